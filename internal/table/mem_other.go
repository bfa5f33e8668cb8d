//go:build !linux

package table

// mapChunk falls back to the Go heap where the mmap path is not wired up.
func mapChunk(n int) ([]byte, bool) { return make([]byte, n), false }

func unmapChunk([]byte) {}

func dropPages([]byte) {}
