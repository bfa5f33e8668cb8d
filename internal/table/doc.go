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
// to at most 7/8, halved when fill drops under 1/8. The index hash is wyhash (as the Go
// runtime uses it without AES) keyed by a per-Table random secret; the slot is CRC16
// (Redis's). Both are computed in one pass over the key (hash.go).
//
// The directory entry of a slot is 16 bytes, so the whole directory (256 KiB) tends to stay
// in cache: the slot table's address and its index's address tagged with the index's size.
// A lookup thus waits for three cache lines in a row, like a Go map's: the directory entry,
// then the index group and the slot table's first line (fetched in parallel), then the
// record.
//
// Records live in the slot's arena as [uvarint klen][uvarint vlen][key][val] — 2 bytes of
// header for pairs under 128 bytes. A slot starts with a single small page of 256 bytes,
// page 0, which doubles (records keep their offsets) up to 4 KiB; further small pages are all
// 4 KiB. Most slots of a table up to several million pairs therefore have one page, whose
// address sits in the slot table's first line: no page-table lookup. A record address is
// page number (19 bits) and offset (12 bits); records over 1 KiB get a page of their own
// (address bit 31 set, the rest numbering it). 4 KiB pages come from a per-Table pool of
// 1 MiB chunks mapped with mmap outside the Go heap: the garbage collector never scans or
// paces on them. Smaller pages and dedicated pages are ordinary (pointer-free) heap slices.
//
// # Reclaiming space
//
// Overwriting a value with one of the same or smaller size rewrites the record in place.
// Otherwise the new record is appended and the old bytes become garbage; once garbage reaches
// a fifth of a slot's small-record bytes, the next write compacts that slot (copies its live
// records to fresh pages, frees the old ones) — so an overwrite-heavy slot stays within 1.25x
// its live bytes, and the cost is proportional to one slot. Dedicated pages are freed as soon
// as their record dies. Deleting a slot's last pair frees its index and pages. The pool gives
// the memory of a chunk whose pages are all free back to the OS at once (madvise) and reuses
// that chunk before mapping another; it madvises idle pages beyond a quarter of those in use.
// Chunks are unmapped only when the Table is unreachable, because a lock-free reader may still
// hold a stale pointer into a freed page (see Concurrency): so address space, not memory,
// stays at its peak.
//
// # Bytes per pair
//
// For 10M pairs of 16-byte keys and 32-byte values (~610 per slot): most slots have a
// 64-group index (768 entries, 4 KiB), 6.7 bytes per pair; the record header is 2 bytes; a
// slot's unfilled last page averages ~2 KiB, 3.4 bytes per pair; records that do not fit the
// end of a page waste ~0.6%; the slot directory, slot tables and page lists add ~0.8. Total
// about 14 bytes per pair beyond the raw 48 (measured: 14.4), against roughly 100 for a Go
// map[string][]byte. At 1M pairs (61 per slot) fixed per-slot costs weigh more: about 32
// bytes per pair. Stats reports the exact figure.
//
// # Concurrency
//
// Writes to a slot take its sync.RWMutex exclusively; Range, Export, Scan and Stats share
// it. Keys spread over 16384 slots, so unrelated writers rarely meet. No goroutine is
// started; compaction happens inside the write that crosses the garbage threshold.
//
// Get and Has take no lock (read.go): each slot has a sequence counter that writers make odd
// on entry and even on exit, and a reader validates that it did not change while it read,
// retrying (and after a few failures taking the read lock) when it did. Readers never write
// shared memory, so readers on many cores do not slow each other down. Torn reads are
// harmless by construction: every pointer a reader follows either describes its own size
// (tagged pointers) or is validated before use, every length is checked against the memory
// it indexes, and all that memory stays allocated while a reader can reach it. This relies on
// x86's ordering of loads and stores; on other architectures, and in race-detector builds,
// Get and Has take the read lock instead. Values are copied out, so callers never hold
// references into table memory.
//
// # Limits
//
// One slot's arena holds at most 2^19 small pages (2 GiB of records up to 1 KiB) and 2^31
// larger records. Exceeding that panics.
package table
