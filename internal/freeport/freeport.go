// Package freeport picks TCP ports on 127.0.0.1 for processes whose address must be known before
// they listen (cluster members name each other up front).
//
// Asking the kernel for port 0 and closing the listener is racy in a way that bites under
// parallel tests: the port comes from the ephemeral range, so any outgoing connection in any
// process on the machine may take it as its local port before the member binds it. Ports are
// therefore drawn at random from outside the ephemeral range, where the kernel never hands
// them out on its own, and never twice by one Picker (a cluster names all its ports before any
// member listens); only another picker drawing the same port in the same instant collides.
//
// Single ports come from below blockBand and from above the ephemeral range; the band from
// blockBand up to the ephemeral range is left to Block, for layouts that need consecutive ports
// (`shoal demo --base-port`), which stay unbound for longer while their processes start.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Picker hands out ports, never the same one twice: give one to everything that picks the ports
// of one cluster. The zero value is ready to use; it is safe for concurrent use.
type Picker struct {
	mu    sync.Mutex
	given map[int]bool
}

// claim records p (and p+offset) as handed out, reporting false if either already was.
func (pk *Picker) claim(p, offset int) bool {
	pk.mu.Lock()
	defer pk.mu.Unlock()
	if pk.given == nil {
		pk.given = map[int]bool{}
	}
	if pk.given[p] || (offset != 0 && pk.given[p+offset]) {
		return false
	}
	pk.given[p] = true
	if offset != 0 {
		pk.given[p+offset] = true
	}
	return true
}

// lowest is the smallest port handed out: below it sit well-known and commonly configured ports.
const lowest = 10000

// blockBand is where the band kept for Block starts.
const blockBand = 20000

// Port returns a port on 127.0.0.1 that was free a moment ago and lies outside the kernel's
// ephemeral range, for a single use (a Picker avoids repeats across several).
func Port() (int, error) {
	var pk Picker
	return pk.PortWith(0)
}

// Addr returns "127.0.0.1:<port>" for a port from Port.
func Addr() (string, error) {
	var pk Picker
	return pk.Addr()
}

// Port returns a port as the package's Port does, never one this Picker handed out before.
func (pk *Picker) Port() (int, error) {
	return pk.PortWith(0)
}

// PortWith returns a free port p such that p+offset is free too (Redis Cluster's bus listens
// 10000 above its client port), both outside the ephemeral range and not handed out by this
// Picker before; offset 0 checks p alone.
func (pk *Picker) PortWith(offset int) (int, error) {
	lo, hi := ephemeralRange()
	var ranges [][2]int // candidate [from, to] ranges outside the ephemeral one and Block's band
	if top := min(lo, blockBand) - 1; top >= lowest {
		ranges = append(ranges, [2]int{lowest, top})
	}
	if hi+1 <= 65535-offset {
		ranges = append(ranges, [2]int{hi + 1, 65535 - offset})
	}
	total := 0
	for _, r := range ranges {
		total += r[1] - r[0] + 1
	}
	var lastErr error
	for range 200 {
		var p int
		if total > 0 {
			n := rand.IntN(total)
			for _, r := range ranges {
				size := r[1] - r[0] + 1
				if n < size {
					p = r[0] + n
					break
				}
				n -= size
			}
		} else {
			// No room outside the ephemeral range: fall back to the kernel's choice.
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return 0, fmt.Errorf("free port: %w", err)
			}
			p = l.Addr().(*net.TCPAddr).Port
			l.Close()
		}
		if q := p + offset; total > 0 && offset != 0 && q >= lo && q <= hi {
			continue
		}
		if err := tryPorts(p, offset); err != nil {
			lastErr = err
			continue
		}
		if !pk.claim(p, offset) {
			continue
		}
		return p, nil
	}
	return 0, fmt.Errorf("free port: no free port found: %w", lastErr)
}

// Block returns a base port p such that p..p+n-1 and, when offset is not 0, p+offset..p+offset+n-1
// are free, all in the band kept for blocks (between blockBand and the ephemeral range).
func Block(n, offset int) (int, error) {
	lo, _ := ephemeralRange()
	top := lo - n - offset // the highest base whose ports all stay below the ephemeral range
	if top < blockBand {
		return 0, fmt.Errorf("free port: no room for %d ports %d apart below %d", n, offset, lo)
	}
	var lastErr error
	for range 200 {
		p := blockBand + rand.IntN(top-blockBand+1)
		var err error
		for i := 0; i < n && err == nil; i++ {
			err = tryPorts(p+i, offset)
		}
		if err == nil {
			return p, nil
		}
		lastErr = err
	}
	return 0, fmt.Errorf("free port: no free block of %d found: %w", n, lastErr)
}

// Addr returns "127.0.0.1:<port>" for a port from the Picker's Port.
func (pk *Picker) Addr() (string, error) {
	p, err := pk.Port()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), nil
}

// tryPorts checks that p (and p+offset, when offset is not 0) can be listened on right now.
func tryPorts(p, offset int) error {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		return err
	}
	defer l.Close()
	if offset == 0 {
		return nil
	}
	l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+offset)))
	if err != nil {
		return err
	}
	return l2.Close()
}

// ephemeralRange reads the kernel's ephemeral port range, defaulting to Linux's 32768-60999.
func ephemeralRange() (lo, hi int) {
	lo, hi = 32768, 60999
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return lo, hi
	}
	l, err1 := strconv.Atoi(f[0])
	h, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || l > h {
		return lo, hi
	}
	return l, h
}
