package client_test

import (
	"errors"
	"testing"
	"time"

	"github.com/shoal-kv/shoal/client"
)

func TestExpiry(t *testing.T) {
	cl := newClient(t, shared, nil)
	ctx := testCtx(t)
	p := uniq(t)
	if err := cl.PutTTL(ctx, p+"a", []byte("v"), 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if ttl, expires, err := cl.TTL(ctx, p+"a"); err != nil || !expires || ttl <= 0 || ttl > 300*time.Millisecond {
		t.Fatalf("TTL = %v, %v, %v; want (0, 300ms]", ttl, expires, err)
	}
	if err := cl.Put(ctx, p+"b", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, expires, err := cl.TTL(ctx, p+"b"); err != nil || expires {
		t.Fatalf("TTL of a key without expiry = %v, %v", expires, err)
	}
	if ok, err := cl.Expire(ctx, p+"b", time.Hour); err != nil || !ok {
		t.Fatalf("Expire = %v, %v", ok, err)
	}
	if ttl, _, _ := cl.TTL(ctx, p+"b"); ttl <= 59*time.Minute {
		t.Fatalf("TTL after Expire(1h) = %v", ttl)
	}
	if ok, err := cl.Persist(ctx, p+"b"); err != nil || !ok {
		t.Fatalf("Persist = %v, %v", ok, err)
	}
	if ok, _ := cl.Persist(ctx, p+"b"); ok {
		t.Fatal("a second Persist removed an expiry")
	}
	if ok, err := cl.Expire(ctx, p+"missing", time.Hour); err != nil || ok {
		t.Fatalf("Expire of a missing key = %v, %v", ok, err)
	}
	if err := cl.PutTTL(ctx, p+"c", []byte("v"), 0); err == nil {
		t.Fatal("PutTTL with no time to live succeeded")
	}
	// Once its time has passed the key is gone, for reads and for TTL alike.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := cl.Get(ctx, p+"a")
		if errors.Is(err, client.ErrNotFound) {
			break
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("GET of an expired key: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, _, err := cl.TTL(ctx, p+"a"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("TTL of an expired key: %v", err)
	}
}
