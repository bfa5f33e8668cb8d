package client_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shoal-kv/shoal/client"
)

// BenchmarkGetManyPutMany10k compares the client's PutMany/GetMany of 10k keys with go-redis
// ClusterClient pipelines of SET/GET on the same in-process group. One op is one whole
// 10k-key call.
func BenchmarkGetManyPutMany10k(b *testing.B) {
	const n = 10000
	keys := make([]string, n)
	kvs := make([]client.KV, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("bench:%d", i)
		kvs[i] = client.KV{Key: keys[i], Value: fmt.Appendf(nil, "value-%d", i)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	cl := newClient(b, shared, nil)
	b.Run("shoal/PutMany", func(b *testing.B) {
		for b.Loop() {
			if err := cl.PutMany(ctx, kvs); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("shoal/GetMany", func(b *testing.B) {
		for b.Loop() {
			if _, err := cl.GetMany(ctx, keys); err != nil {
				b.Fatal(err)
			}
		}
	})

	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: shared.seeds(), ReadTimeout: time.Minute, WriteTimeout: time.Minute})
	defer rc.Close()
	b.Run("goredis/PipelineSet", func(b *testing.B) {
		for b.Loop() {
			p := rc.Pipeline()
			for _, kv := range kvs {
				p.Set(ctx, kv.Key, kv.Value, 0)
			}
			if _, err := p.Exec(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("goredis/PipelineGet", func(b *testing.B) {
		for b.Loop() {
			p := rc.Pipeline()
			for _, k := range keys {
				p.Get(ctx, k)
			}
			if _, err := p.Exec(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}
