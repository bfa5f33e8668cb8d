package router

import (
	"context"
	"errors"
	"testing"

	"github.com/shoal-kv/shoal/internal/controller"
	"github.com/shoal-kv/shoal/internal/group"
	"github.com/shoal-kv/shoal/internal/keyspace"
	"github.com/shoal-kv/shoal/internal/resp"
)

// fakeLocal serves the slots below split; its data operations are not used by these tests.
type fakeLocal struct {
	Local
	split uint16
	gets  int
}

func (f *fakeLocal) Serves(slot uint16) bool { return slot < f.split }

func (f *fakeLocal) GetAppendSlot(_ context.Context, _ []byte, _ uint16, dst []byte) ([]byte, bool, error) {
	f.gets++
	return append(dst, "local"...), true, nil
}

type fakePeers struct {
	calls [][]string
	reply resp.Value
}

func (p *fakePeers) Do(_ context.Context, addr string, args ...[]byte) (resp.Value, error) {
	call := []string{addr}
	for _, a := range args {
		call = append(call, string(a))
	}
	p.calls = append(p.calls, call)
	return p.reply, nil
}

func twoGroups() *controller.Config {
	return &controller.Config{Num: 5,
		Shards: []controller.Shard{{Range: keyspace.Range{Lo: 0, Hi: 8192}, Group: 1}, {Range: keyspace.Range{Lo: 8192, Hi: 16384}, Group: 2}},
		Groups: map[uint64]controller.Group{
			1: {ID: 1, Nodes: []controller.Node{{ID: 1, Addr: "a:1"}}},
			2: {ID: 2, Nodes: []controller.Node{{ID: 1, Addr: "b:1"}}},
		}}
}

func keyIn(lo, hi uint16) []byte {
	for i := 0; ; i++ {
		k := []byte{byte('a' + i%26), byte(i / 26), byte(i / 676)}
		if s := keyspace.Slot(k); s >= lo && s < hi {
			return k
		}
	}
}

func TestLocateAndForward(t *testing.T) {
	local := &fakeLocal{split: 8192}
	peers := &fakePeers{reply: resp.Value{Type: '$', Str: []byte("remote")}}
	r := New(Config{GroupID: 1, Local: local, Peers: peers})
	if ok, _ := r.Locate(9000); !ok {
		t.Fatal("standalone router (no configuration) must answer locally")
	}
	r.SetConfig(twoGroups())
	r.SetConfig(&controller.Config{Num: 3}) // older: ignored
	if r.Latest().Num != 5 {
		t.Fatalf("older configuration replaced a newer one")
	}
	if ok, addr := r.Locate(9000); ok || addr != "b:1" {
		t.Fatalf("Locate(9000) = %v, %q", ok, addr)
	}
	// Once group 2's leader is known, requests for its slots go straight to it.
	cfg := twoGroups()
	cfg.Num = 6
	cfg.Groups[2] = controller.Group{ID: 2, Nodes: []controller.Node{{ID: 1, Addr: "b:1"}, {ID: 2, Addr: "b:2"}, {ID: 3, Addr: "b:3"}}}
	r.SetConfig(cfg)
	r.SetLeaders(map[uint64]uint64{2: 3})
	for _, slot := range []uint16{9000, 9001, 9002} {
		if _, addr := r.Locate(slot); addr != "b:3" {
			t.Fatalf("Locate(%d) = %q, want group 2's leader b:3", slot, addr)
		}
	}
	r.SetLeaders(nil)
	r.SetConfig(&controller.Config{Num: 7, Shards: twoGroups().Shards, Groups: twoGroups().Groups})
	ctx := context.Background()
	if v, ok, err := r.Get(ctx, keyIn(0, 8192)); err != nil || !ok || string(v) != "local" {
		t.Fatalf("local get = %q %v %v", v, ok, err)
	}
	if v, ok, err := r.Get(group.WithSession(ctx, group.Session{ClientID: 7, Seq: 2, Acked: 1}), keyIn(8192, 16384)); err != nil || !ok || string(v) != "remote" {
		t.Fatalf("forwarded get = %q %v %v", v, ok, err)
	}
	got := peers.calls[0]
	if got[0] != "b:1" || got[1] != "SHOAL.FWD" || got[2] != "1" || got[3] != "SHOAL.AT" || got[4] != "7" || got[7] != "GET" {
		t.Fatalf("forwarded as %q", got)
	}
	// A request that was already forwarded MaxHops times is refused instead of forwarded again.
	_, _, err := r.Get(WithHops(ctx, 3), keyIn(8192, 16384))
	if !errors.Is(err, group.ErrWrongGroup) || len(peers.calls) != 1 {
		t.Fatalf("hop limit: err %v, %d calls", err, len(peers.calls))
	}
}

func TestRemoteError(t *testing.T) {
	cases := map[string]error{
		"MOVED 1 a:1":                                                  group.ErrWrongGroup,
		"CLUSTERDOWN Hash slot not served":                             group.ErrWrongGroup,
		"TRYAGAIN slot is moving to this group":                        group.ErrMoving,
		"TRYAGAIN request timed out":                                   group.ErrNotLeader,
		"STALE sequence number already acknowledged":                   group.ErrStale,
		"ERR value is not an integer or out of range":                  group.ErrNotInteger,
		"ERR increment or decrement would overflow":                    group.ErrOverflow,
		"ERR string exceeds maximum allowed size (proto-max-bulk-len)": group.ErrTooLarge,
	}
	for text, want := range cases {
		if err := RemoteError(text); !errors.Is(err, want) {
			t.Errorf("RemoteError(%q) = %v, want %v", text, err, want)
		}
	}
	if err := RemoteError("ERR something else"); err == nil || err.Error() != "ERR something else" {
		t.Errorf("unknown error text not kept: %v", err)
	}
}
