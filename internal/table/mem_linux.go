//go:build linux

package table

import "golang.org/x/sys/unix"

// mapChunk maps n bytes of anonymous memory outside the Go heap: the collector neither scans
// it nor counts it towards its pacing goal, and munmap returns it to the OS at once. The
// chunk is populated up front (MAP_POPULATE): one bulk fault-in per chunk instead of a page
// fault inside every 80th or so Set, which otherwise dominates p99 write latency.
func mapChunk(n int) ([]byte, bool) {
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANON|unix.MAP_POPULATE)
	if err != nil {
		return nil, false
	}
	return b, true
}

// unmapChunk releases a chunk obtained from mapChunk.
func unmapChunk(b []byte) { _ = unix.Munmap(b) }

// dropPages tells the OS it may discard the physical pages behind b; they read as zero later.
func dropPages(b []byte) { _ = unix.Madvise(b, unix.MADV_DONTNEED) }
