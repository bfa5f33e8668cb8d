package client

import (
	"testing"
	"time"

	"github.com/shoal-kv/shoal/internal/resp"
)

func TestSessionAcked(t *testing.T) {
	s := newSession(42)
	a, b, c := s.begin(), s.begin(), s.begin()
	if a != 1 || b != 2 || c != 3 {
		t.Fatalf("seqs %d %d %d", a, b, c)
	}
	s.finish(b)
	if got := s.ackedNow(); got != 0 {
		t.Fatalf("acked %d after finishing 2 only, want 0", got)
	}
	s.finish(a)
	if got := s.ackedNow(); got != 2 {
		t.Fatalf("acked %d, want 2", got)
	}
	s.finish(c)
	if got := s.ackedNow(); got != 3 || len(s.settled) != 0 {
		t.Fatalf("acked %d settled %v", got, s.settled)
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		in   string
		kind replyKind
		addr string
	}{
		{"MOVED 3999 127.0.0.1:6381", replyMoved, "127.0.0.1:6381"},
		{"ASK 3999 10.0.0.1:7000", replyAsk, "10.0.0.1:7000"},
		{"TRYAGAIN shard unavailable: no raft leader", replyRetry, ""},
		{"LOADING", replyRetry, ""},
		{"CLUSTERDOWN Hash slot not served", replyClusterDown, ""},
		{"ERR value is not an integer or out of range", replyFinal, ""},
		{"STALE sequence number already acknowledged", replyFinal, ""},
	} {
		v := resp.Value{Type: '-', Str: []byte(tc.in)}
		if k, a := classify(&v); k != tc.kind || a != tc.addr {
			t.Errorf("%q: %v %q, want %v %q", tc.in, k, a, tc.kind, tc.addr)
		}
	}
	if k, _ := classify(&resp.Value{Type: '+', Str: []byte("OK")}); k != replyOK {
		t.Error("+OK not ok")
	}
}

func TestParseSlots(t *testing.T) {
	node := func(host string, port int64) resp.Value {
		return resp.Value{Type: '*', Array: []resp.Value{{Type: '$', Str: []byte(host)}, {Type: ':', Int: port}, {Type: '$', Str: []byte("id")}}}
	}
	v := resp.Value{Type: '*', Array: []resp.Value{
		{Type: '*', Array: []resp.Value{{Type: ':', Int: 0}, {Type: ':', Int: 8191}, node("10.0.0.1", 1), node("10.0.0.2", 2)}},
		{Type: '*', Array: []resp.Value{{Type: ':', Int: 8192}, {Type: ':', Int: 16383}, node("", 3)}},
	}}
	m, err := parseSlots(v, "10.0.0.9:5")
	if err != nil {
		t.Fatal(err)
	}
	if sh := m.lookup(0); sh.pick() != "10.0.0.1:1" || !sh.has("10.0.0.2:2") {
		t.Fatalf("slot 0: %v", sh.addrs)
	}
	if sh := m.lookup(16383); sh.pick() != "10.0.0.9:3" {
		t.Fatalf("slot 16383: %v", sh.addrs)
	}
	sh := m.lookup(1)
	sh.avoid("10.0.0.1:1")
	if sh.pick() != "10.0.0.2:2" {
		t.Fatalf("after avoid: %s", sh.pick())
	}
	if _, err := parseSlots(resp.Value{Type: '*', Array: []resp.Value{{Type: ':', Int: 1}}}, ""); err == nil {
		t.Fatal("malformed reply accepted")
	}
}

func TestBackoffBounds(t *testing.T) {
	c := &Client{opts: Options{MinBackoff: 4 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}}
	for attempt := 1; attempt < 40; attempt++ {
		for range 20 {
			d := c.backoff(attempt)
			if d < 2*time.Millisecond || d > 102*time.Millisecond {
				t.Fatalf("attempt %d: backoff %v out of bounds", attempt, d)
			}
		}
	}
}
