// Package table is Shoal's storage engine: a concurrent, memory-lean hash table from byte
// strings to byte strings, organised by Redis Cluster hash slot.
//
// # Layout
//
// A Table is a directory of keyspace.NumSlots (16384) slot tables, created on a slot's first
// write. Each slot table is independent: its own lock, its own index and its own arena. This
// makes the slot the unit of everything the rest of Shoal does with ranges — counting,
// exporting, dropping and scanning a slot range costs time proportional to the range — and it
// makes growth incremental by construction: at 10M pairs a slot holds ~610 pairs, so the
// largest rehash or compaction touches ~30 KiB, never the whole table.
//
// The index of a slot is a Swiss-style open-addressing table of 64-byte groups (one cache
// line): 12 control bytes (7 bits of the key's hash, or empty/deleted) and 12 uint32 record
// addresses. A lookup matches a group's control bytes with SWAR arithmetic and finds the
// candidate's address in the same line, then reads one record. Capacity is 12 times a power
// of two groups (power of two so that SCAN's reverse-binary cursor survives resizes), filled
// to at most 7/8, halved when fill drops under 1/8. A slot's hash is maphash with a per-Table
// seed; the slot itself is CRC16 (Redis's), computed four bytes per step.
//
// Records live in the slot's arena as [uvarint klen][uvarint vlen][key][val] — 2 bytes of
// header for pairs under 128 bytes. The arena is a list of pages: the first page is 256 bytes,
// each next one doubles up to 4 KiB, so a slot's unused tail is at most about a page. A record
// address is page number (20 bits) and offset (12 bits). Records over 1 KiB get a page of
// their own. 4 KiB pages come from a per-Table pool of 1 MiB chunks mapped with mmap outside
// the Go heap: the garbage collector never scans or paces on them, and empty chunks are
// unmapped at once. Smaller and dedicated pages are ordinary (pointer-free) heap slices.
//
// # Reclaiming space
//
// Overwriting a value with one of the same or smaller size rewrites the record in place.
// Otherwise the new record is appended and the old bytes become garbage; once garbage reaches
// a fifth of a slot's small-record bytes, the next write compacts that slot (copies its live
// records to fresh pages, frees the old ones) — so an overwrite-heavy slot stays within 1.25x
// its live bytes, and the cost is proportional to one slot. Dedicated pages are freed as soon
// as their record dies. Deleting a slot's last pair frees its index and pages; the pool returns
// unused chunks to the OS and madvises idle pages beyond a quarter of those in use.
//
// # Bytes per pair
//
// For 10M pairs of 16-byte keys and 32-byte values (~610 per slot): most slots have a
// 64-group index (768 entries, 4 KiB), 6.7 bytes per pair; the record header is 2 bytes; a
// slot's unfilled last page averages ~2 KiB, 3.4 bytes per pair; records that do not fit the
// end of a page waste ~0.6%; the slot directory, headers and page lists add ~0.7. Total about
// 13 bytes per pair beyond the raw 48, against roughly 100 for a Go map[string][]byte. At 1M
// pairs (61 per slot) fixed per-slot costs weigh more: about 35 bytes per pair. Stats reports
// the exact figure.
//
// # Concurrency
//
// Each slot is guarded by a sync.RWMutex: Get and other reads share it, writes take it
// exclusively. Keys spread over 16384 slots, so unrelated writers rarely meet. No goroutine is
// started; compaction happens inside the write that crosses the garbage threshold. Values are
// copied out under the read lock, so callers never hold references into table memory.
//
// # Limits
//
// One slot's arena holds at most 2^20 pages: about 4 GiB of small records, or 2^20 records
// larger than 1 KiB. Exceeding that panics.
package table
