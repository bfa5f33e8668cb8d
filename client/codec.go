package client

import (
	"context"
	"encoding/json"
	"fmt"
)

// Codec converts typed values to and from the bytes stored under a key, for [GetAs] and
// [PutAs]. Implementations wrap a binary format (protobuf, msgpack, gob...) and must be safe for
// concurrent use.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// JSON is the [Codec] of encoding/json, used by [GetJSON] and [PutJSON].
type JSON struct{}

// Marshal encodes v with json.Marshal.
func (JSON) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal decodes data with json.Unmarshal.
func (JSON) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// GetAs reads key and decodes its value with codec. A missing key returns an error wrapping
// [ErrNotFound] and the zero T.
func GetAs[T any](ctx context.Context, c *Client, codec Codec, key string) (T, error) {
	var v T
	b, err := c.Get(ctx, key)
	if err != nil {
		return v, err
	}
	if err := codec.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("shoal: decoding %q: %w", key, err)
	}
	return v, nil
}

// PutAs encodes v with codec and stores it under key.
func PutAs[T any](ctx context.Context, c *Client, codec Codec, key string, v T) error {
	b, err := codec.Marshal(v)
	if err != nil {
		return fmt.Errorf("shoal: encoding %q: %w", key, err)
	}
	return c.Put(ctx, key, b)
}

// GetJSON reads key and decodes its value as JSON into a T. A missing key returns an error
// wrapping [ErrNotFound].
func GetJSON[T any](ctx context.Context, c *Client, key string) (T, error) {
	return GetAs[T](ctx, c, JSON{}, key)
}

// PutJSON stores v under key encoded as JSON.
func PutJSON[T any](ctx context.Context, c *Client, key string, v T) error {
	return PutAs(ctx, c, JSON{}, key, v)
}
