package keyspace

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Range is the half-open slot interval [Lo,Hi). A valid Range has
// Lo <= Hi <= NumSlots; Lo >= Hi means empty. Half-open bounds let the full
// keyspace [0,16384) and adjacent ranges ([a,b) and [b,c)) be written without
// off-by-one arithmetic. The zero Range is empty.
type Range struct{ Lo, Hi uint16 }

// All returns the range of every slot, [0,16384).
func All() Range { return Range{0, NumSlots} }

// SlotRange returns the range holding just slot s, [s,s+1).
func SlotRange(s uint16) Range { return Range{s, s + 1} }

// Valid reports whether Lo <= Hi <= NumSlots.
func (r Range) Valid() bool { return r.Lo <= r.Hi && r.Hi <= NumSlots }

// Contains reports whether slot lies in r.
func (r Range) Contains(slot uint16) bool { return r.Lo <= slot && slot < r.Hi }

// Len returns the number of slots in r (0 when empty).
func (r Range) Len() int {
	if r.Hi <= r.Lo {
		return 0
	}
	return int(r.Hi) - int(r.Lo)
}

// Empty reports whether r holds no slot.
func (r Range) Empty() bool { return r.Hi <= r.Lo }

// Overlaps reports whether r and o share at least one slot. Empty ranges
// overlap nothing.
func (r Range) Overlaps(o Range) bool {
	return !r.Empty() && !o.Empty() && r.Lo < o.Hi && o.Lo < r.Hi
}

// Intersect returns the slots in both r and o. When they do not overlap the
// result is the zero Range, so that all empty intersections compare equal.
func (r Range) Intersect(o Range) Range {
	x := Range{max(r.Lo, o.Lo), min(r.Hi, o.Hi)}
	if x.Empty() {
		return Range{}
	}
	return x
}

// Split cuts r at slot at into [Lo,at) and [at,Hi). at is clamped to
// [Lo,Hi], so splitting outside r yields r and an empty range, and the two
// halves always partition r.
func (r Range) Split(at uint16) (Range, Range) {
	if r.Empty() {
		return r, Range{r.Hi, r.Hi}
	}
	at = min(max(at, r.Lo), r.Hi)
	return Range{r.Lo, at}, Range{at, r.Hi}
}

// String formats r in half-open notation, e.g. "[0,16384)". ParseRange
// accepts this form back.
func (r Range) String() string {
	return "[" + strconv.Itoa(int(r.Lo)) + "," + strconv.Itoa(int(r.Hi)) + ")"
}

// ErrBadRange is wrapped by every ParseRange error, for errors.Is.
var ErrBadRange = errors.New("keyspace: bad slot range")

// ParseRange parses a slot range in one of three notations:
//
//   - "[lo,hi)": half-open, as String prints it; lo <= hi <= 16384, so
//     "[5,5)" is a valid empty range.
//   - "lo-hi": inclusive at both ends, as Redis prints slot ranges in
//     CLUSTER NODES and redis-cli; "0-16383" is All(). Requires lo <= hi <= 16383.
//   - "n": the single slot n, as Redis prints one-slot ranges.
//
// Surrounding spaces are ignored. Errors wrap ErrBadRange and quote s.
func ParseRange(s string) (Range, error) {
	t := strings.TrimSpace(s)
	if rest, ok := strings.CutPrefix(t, "["); ok {
		body, ok := strings.CutSuffix(rest, ")")
		if !ok {
			return Range{}, fmt.Errorf("%w %q: missing ')'", ErrBadRange, s)
		}
		a, b, ok := strings.Cut(body, ",")
		if !ok {
			return Range{}, fmt.Errorf("%w %q: missing ','", ErrBadRange, s)
		}
		lo, err1 := parseBound(a, NumSlots)
		hi, err2 := parseBound(b, NumSlots)
		if err := errors.Join(err1, err2); err != nil {
			return Range{}, fmt.Errorf("%w %q: %v", ErrBadRange, s, err)
		}
		if lo > hi {
			return Range{}, fmt.Errorf("%w %q: lo > hi", ErrBadRange, s)
		}
		return Range{lo, hi}, nil
	}
	a, b, dash := strings.Cut(t, "-")
	if !dash {
		b = a
	}
	lo, err1 := parseBound(a, NumSlots-1)
	hi, err2 := parseBound(b, NumSlots-1)
	if err := errors.Join(err1, err2); err != nil {
		return Range{}, fmt.Errorf("%w %q: %v", ErrBadRange, s, err)
	}
	if lo > hi {
		return Range{}, fmt.Errorf("%w %q: lo > hi", ErrBadRange, s)
	}
	return Range{lo, hi + 1}, nil
}

// parseBound parses a decimal slot number in [0,limit]. Signs and spaces are
// rejected so that only the canonical forms parse.
func parseBound(s string, limit int) (uint16, error) {
	if s == "" || s[0] == '+' || s[0] == '-' {
		return 0, fmt.Errorf("bad number %q", s)
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n > uint64(limit) {
		return 0, fmt.Errorf("bad number %q (want 0..%d)", s, limit)
	}
	return uint16(n), nil
}
