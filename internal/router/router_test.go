package router

import (
	"context"
	"errors"
	"strings"
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

// expiryLocal records the expiry calls the router runs on the local group.
type expiryLocal struct {
	fakeLocal
	expires []group.ExpireArgs
}

func (f *expiryLocal) Expire(_ context.Context, a group.ExpireArgs) (bool, error) {
	f.expires = append(f.expires, a)
	return true, nil
}

func (f *expiryLocal) ExpireTime(context.Context, []byte) (int64, bool, error) {
	return 42, true, nil
}

// TestForwardExpiry: expiries travel to another group as absolute times (SET ... PXAT,
// PEXPIREAT), so that they mean the same instant there, and the replies decode back.
func TestForwardExpiry(t *testing.T) {
	local := &expiryLocal{fakeLocal: fakeLocal{split: 8192}}
	peers := &fakePeers{}
	r := New(Config{GroupID: 1, Local: local, Peers: peers})
	r.SetConfig(twoGroups())
	ctx := context.Background()
	mine, theirs := keyIn(0, 8192), keyIn(8192, 16384)
	last := func() string {
		call := peers.calls[len(peers.calls)-1]
		return strings.Join(call[3:], " ") // after address, SHOAL.FWD and the hop count
	}
	k := string(theirs)

	peers.reply = resp.Value{Type: '+', Str: []byte("OK")}
	for _, s := range []struct {
		a    group.SetArgs
		want string
	}{
		{group.SetArgs{Key: theirs, Val: []byte("v"), ExpireAt: 1700000000123}, "SET " + k + " v PXAT 1700000000123"},
		{group.SetArgs{Key: theirs, Val: []byte("v"), ExpireAt: -5, NX: true}, "SET " + k + " v NX PXAT 1"},
		{group.SetArgs{Key: theirs, Val: []byte("v"), KeepTTL: true, XX: true}, "SET " + k + " v XX KEEPTTL"},
	} {
		if res, err := r.Set(ctx, s.a); err != nil || !res.Done {
			t.Fatalf("Set(%+v) = %+v, %v", s.a, res, err)
		}
		if got := last(); got != s.want {
			t.Errorf("Set(%+v) forwarded as %q, want %q", s.a, got, s.want)
		}
	}

	for _, s := range []struct {
		a     group.ExpireArgs
		reply int64
		want  string
	}{
		{group.ExpireArgs{Key: theirs, At: 1700000000123}, 1, "PEXPIREAT " + k + " 1700000000123"},
		{group.ExpireArgs{Key: theirs, At: -1, NX: true}, 1, "PEXPIREAT " + k + " -1 NX"},
		{group.ExpireArgs{Key: theirs, At: 5, XX: true, GT: true}, 0, "PEXPIREAT " + k + " 5 XX GT"},
		{group.ExpireArgs{Key: theirs, At: 5, LT: true}, 0, "PEXPIREAT " + k + " 5 LT"},
		{group.ExpireArgs{Key: theirs, Persist: true}, 1, "PERSIST " + k},
	} {
		peers.reply = resp.Value{Type: ':', Int: s.reply}
		done, err := r.Expire(ctx, s.a)
		if err != nil || done != (s.reply == 1) {
			t.Errorf("Expire(%+v) = %v, %v with reply %d", s.a, done, err, s.reply)
		}
		if got := last(); got != s.want {
			t.Errorf("Expire(%+v) forwarded as %q, want %q", s.a, got, s.want)
		}
	}

	for _, s := range []struct {
		reply, at int64
		ok        bool
	}{{-2, 0, false}, {-1, 0, true}, {1700000000123, 1700000000123, true}} {
		peers.reply = resp.Value{Type: ':', Int: s.reply}
		at, ok, err := r.ExpireTime(ctx, theirs)
		if err != nil || at != s.at || ok != s.ok || last() != "PEXPIRETIME "+k {
			t.Errorf("PEXPIRETIME reply %d: ExpireTime = %d, %v, %v (sent %q)", s.reply, at, ok, err, last())
		}
	}

	// A key of the local group never leaves the node.
	n := len(peers.calls)
	if done, err := r.Expire(ctx, group.ExpireArgs{Key: mine, At: 7, GT: true}); err != nil || !done ||
		len(local.expires) != 1 || local.expires[0].At != 7 || !local.expires[0].GT {
		t.Errorf("local Expire = %v, %v; group saw %+v", done, err, local.expires)
	}
	if at, ok, err := r.ExpireTime(ctx, mine); err != nil || !ok || at != 42 {
		t.Errorf("local ExpireTime = %d, %v, %v", at, ok, err)
	}
	if len(peers.calls) != n {
		t.Errorf("local expiry calls were forwarded: %q", peers.calls[n:])
	}
}
