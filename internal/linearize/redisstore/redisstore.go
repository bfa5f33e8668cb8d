// Package redisstore adapts a go-redis client to linearize.Store for tests. It is imported only
// by tests, so go-redis stays a test dependency.
package redisstore

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"

	"github.com/shoal-kv/shoal/internal/linearize"
)

type store struct{ c redis.Cmdable }

// New adapts c.
func New(c redis.Cmdable) linearize.Store { return store{c} }

func (s store) Get(ctx context.Context, key string) (string, bool, error) {
	v, err := s.c.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	return v, err == nil, err
}

func (s store) Put(ctx context.Context, key, val string) error {
	return s.c.Set(ctx, key, val, 0).Err()
}

func (s store) Append(ctx context.Context, key, val string) error {
	return s.c.Append(ctx, key, val).Err()
}
