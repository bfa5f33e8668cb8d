package table

import "unsafe"

// Stats describes a table's contents and the memory it holds. Byte counts are exact for the
// table's own accounting; they exclude allocator and OS rounding outside the table's control.
type Stats struct {
	Pairs      int64 // number of pairs
	KeyBytes   int64 // sum of key lengths
	ValueBytes int64 // sum of value lengths
	// IndexBytes is the memory of the per-slot indexes (64 bytes per 12 entries, filled to
	// 44-88%).
	IndexBytes int64
	// SlabBytes is the arena memory allocated for records: slot pages, dedicated pages of
	// large records, and idle pooled pages still resident.
	SlabBytes int64
	// SlabLiveBytes is the part of SlabBytes holding live records (headers, keys, values).
	SlabLiveBytes int64
	// MetaBytes is the fixed cost: the slot directory, per-slot headers and page lists.
	MetaBytes int64
	// OverheadPerPair is (IndexBytes + SlabBytes + MetaBytes - KeyBytes - ValueBytes) / Pairs:
	// what the table costs per pair beyond the raw key and value bytes (0 when empty).
	OverheadPerPair float64
}

// Stats returns the table's statistics. Each slot is read under its read lock, so the figures
// are exact when no writes run concurrently.
func (t *Table) Stats() Stats {
	var st Stats
	st.MetaBytes = int64(unsafe.Sizeof(*t))
	for i := range t.dir {
		s := t.reader(uint16(i))
		if s == nil {
			continue
		}
		s.mu.RLock()
		st.Pairs += int64(s.n)
		st.KeyBytes += s.keyBytes
		st.ValueBytes += s.valBytes
		st.IndexBytes += 8 * int64(len(s.idx))
		st.SlabBytes += s.smallCap + s.largeCap
		st.SlabLiveBytes += s.live
		st.MetaBytes += int64(unsafe.Sizeof(*s)) + 8*int64(cap(s.small)) +
			int64(cap(s.large))*int64(unsafe.Sizeof(page{})) + 4*int64(cap(s.holes))
		s.mu.RUnlock()
	}
	_, idle := t.pool.stats()
	st.SlabBytes += idle
	if st.Pairs > 0 {
		st.OverheadPerPair = float64(st.IndexBytes+st.SlabBytes+st.MetaBytes-st.KeyBytes-st.ValueBytes) /
			float64(st.Pairs)
	}
	return st
}
