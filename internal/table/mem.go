package table

import (
	"runtime"
	"slices"
	"sync"
	"unsafe"
)

// pagePool hands out the full-size (maxPage) arena pages of one Table. Pages are carved from
// 1 MiB chunks mapped outside the Go heap (see mapChunk), so tens of gigabytes of pairs neither
// slow the garbage collector nor double the heap goal. A chunk whose pages are all free is
// released at once: its memory is madvised away and the chunk is set aside for reuse before
// any new mapping. Once more than a quarter of the held pages sit idle, freed pages are
// madvised away too, so deleted and overwritten space really returns to the OS.
//
// Released chunks stay mapped (they cost address space, not memory) until the Table is
// unreachable: lock-free readers (see read.go) may still hold a pointer into a page that a
// writer has just freed, and reading it must yield stale bytes, which they discard, rather
// than a fault. Unmapping earlier would need to know that no reader holds such a pointer.
//
// Pages smaller than maxPage (page 0 of a slot while it grows) and dedicated pages of large
// records come from the Go heap instead: they are few and their sizes vary.
//
// The pool is a thin handle over its state so that a cleanup can unmap the chunks once the
// handle is unreachable. Every slot table holds the handle, and every access to arena memory
// happens while its slot table is live (under its lock), so no page is unmapped in use.
type pagePool struct{ *poolState }

// poolState is the state of a pagePool.
type poolState struct {
	mu       sync.Mutex
	chunks   []*chunk // held chunks, sorted by base address, for put's lookup
	released [][]byte // chunks whose pages were all freed; madvised away, reused first
	cur      *chunk   // chunk get allocates from while it has room
	used     int      // pages handed out
	idle     int      // free pages still backed by physical memory
	mappings int      // chunks mapped: held plus released
}

const (
	chunkSize     = 1 << 20
	pagesPerChunk = chunkSize / maxPage
)

// chunk is one mapping of pagesPerChunk pages.
type chunk struct {
	mem     []byte
	base    uintptr
	reused  bool     // a released chunk taken back: its pages not yet handed out hold no memory
	free    []uint16 // free page numbers, most recently freed last (likely still resident)
	next    int      // pages at or beyond next were never handed out
	used    int
	dropped [pagesPerChunk / 64]uint64 // free pages whose memory was madvised away
}

func (c *chunk) hasRoom() bool { return len(c.free) > 0 || c.next < pagesPerChunk }

// newPagePool returns an empty pool whose chunks are unmapped when it becomes unreachable.
func newPagePool() *pagePool {
	p := &pagePool{&poolState{}}
	runtime.AddCleanup(p, (*poolState).release, p.poolState)
	return p
}

// get returns a zero-length-agnostic page of maxPage bytes (contents unspecified).
func (p *poolState) get() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.cur
	if c == nil || !c.hasRoom() {
		c = nil
		// Prefer the lowest chunk with room, so that high chunks drain and can be unmapped.
		for _, x := range p.chunks {
			if x.hasRoom() {
				c = x
				break
			}
		}
		if c == nil {
			var mem []byte
			reused := false
			if n := len(p.released); n > 0 {
				mem, reused = p.released[n-1], true
				p.released = p.released[:n-1]
			} else {
				var ok bool
				if mem, ok = mapChunk(chunkSize); !ok {
					return make([]byte, maxPage)
				}
				p.mappings++
			}
			c = &chunk{mem: mem, base: uintptr(unsafe.Pointer(unsafe.SliceData(mem))), reused: reused}
			i, _ := slices.BinarySearchFunc(p.chunks, c.base, func(x *chunk, b uintptr) int {
				return cmpUintptr(x.base, b)
			})
			p.chunks = slices.Insert(p.chunks, i, c)
		}
		p.cur = c
	}
	var i int
	if n := len(c.free); n > 0 {
		i = int(c.free[n-1])
		c.free = c.free[:n-1]
		if c.dropped[i/64]&(1<<(i%64)) != 0 {
			c.dropped[i/64] &^= 1 << (i % 64)
		} else {
			p.idle--
		}
	} else {
		i = c.next
		c.next++
	}
	c.used++
	p.used++
	return c.mem[i*maxPage : (i+1)*maxPage : (i+1)*maxPage]
}

// put returns a page obtained from get. Pages that did not come from a chunk (the heap
// fallback) are left to the garbage collector.
func (p *poolState) put(b []byte) {
	addr := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	p.mu.Lock()
	defer p.mu.Unlock()
	i, found := slices.BinarySearchFunc(p.chunks, addr, func(x *chunk, a uintptr) int {
		return cmpUintptr(x.base, a)
	})
	if !found {
		i--
	}
	if i < 0 || addr >= p.chunks[i].base+chunkSize {
		return
	}
	c := p.chunks[i]
	pg := int((addr - c.base) / maxPage)
	c.used--
	p.used--
	if c.used == 0 {
		// Whole chunk free: give its memory back. Its other free pages leave the idle count.
		for _, f := range c.free {
			if c.dropped[f/64]&(1<<(f%64)) == 0 {
				p.idle--
			}
		}
		p.chunks = slices.Delete(p.chunks, i, i+1)
		if p.cur == c {
			p.cur = nil
		}
		dropPages(c.mem)
		p.released = append(p.released, c.mem)
		return
	}
	c.free = append(c.free, uint16(pg))
	if p.idle >= 256 && p.idle*4 >= p.used {
		c.dropped[pg/64] |= 1 << (pg % 64)
		dropPages(b)
	} else {
		p.idle++
	}
}

// release unmaps every chunk. Only for a pool no page of which is referenced any more.
func (p *poolState) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.chunks {
		unmapChunk(c.mem)
	}
	for _, mem := range p.released {
		unmapChunk(mem)
	}
	p.chunks, p.released, p.cur, p.used, p.idle, p.mappings = nil, nil, nil, 0, 0, 0
}

// stats reports the bytes of the chunks the pool holds (released chunks, which hold no
// memory, are not counted) and the idle resident bytes: freed pages not yet madvised away,
// and the populated pages of chunks never handed out.
func (p *poolState) stats() (held, idle int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fresh := 0
	for _, c := range p.chunks {
		if !c.reused {
			fresh += pagesPerChunk - c.next
		}
	}
	return int64(len(p.chunks)) * chunkSize, int64(p.idle+fresh) * maxPage
}

func cmpUintptr(a, b uintptr) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
