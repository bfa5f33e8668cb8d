package keyspace

import (
	"fmt"
	"iter"
	"slices"
	"sort"
)

// RangeMap maps disjoint slot ranges to values of type T (e.g. the group
// that owns them). Slots outside every range are unmapped. Entries are kept
// as a slice sorted by Lo, so Lookup is a binary search and All walks in slot
// order; ownership maps change rarely and hold few ranges, which makes a
// sorted slice cheaper than a tree.
//
// Adjacent ranges with the same value are not merged, because T need not be
// comparable. The zero RangeMap is empty and ready to use. A RangeMap is not
// safe for concurrent mutation; use Clone to hand a snapshot to readers.
type RangeMap[T any] struct {
	ents []rangeEntry[T] // sorted by r.Lo, non-empty, non-overlapping
}

type rangeEntry[T any] struct {
	r Range
	v T
}

// overlapping returns the indexes [i,j) of the entries that overlap r.
func (m *RangeMap[T]) overlapping(r Range) (i, j int) {
	i = sort.Search(len(m.ents), func(k int) bool { return m.ents[k].r.Hi > r.Lo })
	j = i + sort.Search(len(m.ents)-i, func(k int) bool { return m.ents[i+k].r.Lo >= r.Hi })
	return i, j
}

// replace removes r from the map and, when set is true, maps r to v. The
// entries cut by r's edges keep their parts outside r.
func (m *RangeMap[T]) replace(r Range, v T, set bool) {
	if !r.Valid() {
		panic(fmt.Sprintf("keyspace: invalid range %v", r))
	}
	if r.Empty() {
		return
	}
	i, j := m.overlapping(r)
	var buf [3]rangeEntry[T]
	repl := buf[:0]
	if i < j && m.ents[i].r.Lo < r.Lo {
		repl = append(repl, rangeEntry[T]{Range{m.ents[i].r.Lo, r.Lo}, m.ents[i].v})
	}
	if set {
		repl = append(repl, rangeEntry[T]{r, v})
	}
	if i < j && m.ents[j-1].r.Hi > r.Hi {
		repl = append(repl, rangeEntry[T]{Range{r.Hi, m.ents[j-1].r.Hi}, m.ents[j-1].v})
	}
	m.ents = slices.Replace(m.ents, i, j, repl...)
}

// Set maps every slot of r to v, overwriting earlier mappings of those slots;
// ranges partly covered by r are split and keep their value outside r.
// Setting an empty range does nothing. It panics if r is not Valid, since a
// range past NumSlots is a programming error.
func (m *RangeMap[T]) Set(r Range, v T) { m.replace(r, v, true) }

// Delete unmaps every slot of r, splitting ranges partly covered by r.
// It panics if r is not Valid.
func (m *RangeMap[T]) Delete(r Range) {
	var zero T
	m.replace(r, zero, false)
}

// Lookup returns the value mapped to slot and the whole stored range that
// holds it, or ok == false if slot is unmapped. It takes O(log n) time.
func (m *RangeMap[T]) Lookup(slot uint16) (v T, r Range, ok bool) {
	i := sort.Search(len(m.ents), func(k int) bool { return m.ents[k].r.Hi > slot })
	if i < len(m.ents) && m.ents[i].r.Lo <= slot {
		return m.ents[i].v, m.ents[i].r, true
	}
	return v, Range{}, false
}

// All yields the stored ranges and their values in increasing slot order.
// The map must not be modified during the iteration.
func (m *RangeMap[T]) All() iter.Seq2[Range, T] {
	return func(yield func(Range, T) bool) {
		for _, e := range m.ents {
			if !yield(e.r, e.v) {
				return
			}
		}
	}
}

// Len returns the number of stored ranges (not slots).
func (m *RangeMap[T]) Len() int { return len(m.ents) }

// Clone returns an independent copy of m; values are copied with assignment,
// so values that are pointers still share their targets.
func (m *RangeMap[T]) Clone() *RangeMap[T] {
	return &RangeMap[T]{ents: slices.Clone(m.ents)}
}
