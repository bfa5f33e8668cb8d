package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestPortOutsideEphemeralRange(t *testing.T) {
	lo, hi := ephemeralRange()
	for range 20 {
		p, err := Port()
		if err != nil {
			t.Fatal(err)
		}
		if p >= lo && p <= hi {
			t.Fatalf("port %d inside the ephemeral range %d-%d", p, lo, hi)
		}
		if p < lowest || p > 65535 {
			t.Fatalf("port %d out of bounds", p)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d not listenable: %v", p, err)
		}
		l.Close()
	}
}

func TestPortWithOffsetLeavesBothFree(t *testing.T) {
	var pk Picker
	p, err := pk.PortWith(10000)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []int{p, p + 10000} {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(q)))
		if err != nil {
			t.Fatalf("port %d not listenable: %v", q, err)
		}
		l.Close()
	}
}

func TestPortSkipsTakenPorts(t *testing.T) {
	// Hold many ports; none handed out afterwards may be one of them.
	held := map[int]bool{}
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range 50 {
		p, err := Port()
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue // taken by someone else meanwhile
		}
		ls = append(ls, l)
		held[p] = true
	}
	for range 200 {
		p, err := Port()
		if err != nil {
			t.Fatal(err)
		}
		if held[p] {
			t.Fatalf("port %d handed out while held", p)
		}
	}
}

// A Picker never hands out the same port twice, even once the first holder has closed it.
func TestPickerNeverRepeats(t *testing.T) {
	var pk Picker
	seen := map[int]bool{}
	for range 500 {
		p, err := pk.Port()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
}

func TestPortWithOffsetOutsideEphemeral(t *testing.T) {
	lo, hi := ephemeralRange()
	var pk Picker
	for range 20 {
		p, err := pk.PortWith(10000)
		if err != nil {
			t.Fatal(err)
		}
		if q := p + 10000; q >= lo && q <= hi {
			t.Fatalf("offset port %d inside the ephemeral range %d-%d", q, lo, hi)
		}
	}
}

// Block hands out consecutive free ports (and their offset twins) in its own band, which single
// ports never come from.
func TestBlock(t *testing.T) {
	lo, _ := ephemeralRange()
	p, err := Block(3, 10000)
	if err != nil {
		t.Fatal(err)
	}
	if p < blockBand || p+2+10000 >= lo {
		t.Fatalf("block at %d outside [%d, %d)", p, blockBand, lo)
	}
	for i := range 3 {
		for _, q := range []int{p + i, p + i + 10000} {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(q)))
			if err != nil {
				t.Fatalf("port %d of the block not listenable: %v", q, err)
			}
			l.Close()
		}
	}
	var pk Picker
	for range 200 {
		q, err := pk.Port()
		if err != nil {
			t.Fatal(err)
		}
		if q >= blockBand && q < lo {
			t.Fatalf("single port %d drawn from the block band", q)
		}
	}
}
