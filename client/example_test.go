package client_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/shoal-kv/shoal/client"
)

// This example starts a three-node group in-process (exampleCluster), connects, and uses the
// single-key calls.
func Example() {
	seeds, stop := exampleCluster()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c, err := client.New(ctx, client.Options{Seeds: seeds})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	_ = c.Put(ctx, "greeting", []byte("hello"))
	v, _ := c.Get(ctx, "greeting")
	fmt.Printf("greeting = %s\n", v)

	_, err = c.Get(ctx, "nobody")
	fmt.Println("missing key is ErrNotFound:", errors.Is(err, client.ErrNotFound))

	_ = c.Put(ctx, "blank", []byte{})
	v, err = c.Get(ctx, "blank")
	fmt.Printf("empty value found: %v, len %d\n", err == nil, len(v))

	prev, existed, _ := c.Swap(ctx, "greeting", []byte("bonjour"))
	fmt.Printf("swap replaced %q (existed %v)\n", prev, existed)

	stored, _ := c.PutIfAbsent(ctx, "greeting", []byte("hola"))
	fmt.Println("PutIfAbsent on existing key stored:", stored)

	swapped, _ := c.CompareAndSwap(ctx, "greeting", []byte("bonjour"), []byte("ciao"))
	fmt.Println("CompareAndSwap swapped:", swapped)

	n, _ := c.Append(ctx, "log", []byte("a;"))
	n, _ = c.Append(ctx, "log", []byte("b;"))
	fmt.Println("log length:", n)

	hits, _ := c.Incr(ctx, "hits", 10)
	hits, _ = c.Incr(ctx, "hits", -3)
	fmt.Println("hits:", hits)

	existed, _ = c.Delete(ctx, "greeting")
	ok, _ := c.Exists(ctx, "greeting")
	fmt.Printf("deleted %v, still exists %v\n", existed, ok)

	// Output:
	// greeting = hello
	// missing key is ErrNotFound: true
	// empty value found: true, len 0
	// swap replaced "hello" (existed true)
	// PutIfAbsent on existing key stored: false
	// CompareAndSwap swapped: true
	// log length: 4
	// hits: 7
	// deleted true, still exists false
}

// Bulk calls split keys by owning node and pipeline them; results come back in input order and
// failures are reported per key.
func ExampleClient_GetMany() {
	seeds, stop := exampleCluster()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.New(ctx, client.Options{Seeds: seeds})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	var kvs []client.KV
	for i := range 1000 {
		kvs = append(kvs, client.KV{Key: fmt.Sprintf("item:%d", i), Value: fmt.Appendf(nil, "%d", i*i)})
	}
	if err := c.PutMany(ctx, kvs); err != nil {
		panic(err)
	}
	items, err := c.GetMany(ctx, []string{"item:3", "item:999", "item:none"})
	if err != nil {
		panic(err)
	}
	for _, it := range items {
		fmt.Printf("%s found=%v value=%s\n", it.Key, it.Found, it.Value)
	}
	deleted, _ := c.DeleteMany(ctx, []string{"item:1", "item:2", "item:none"})
	fmt.Println("deleted:", deleted)

	// Output:
	// item:3 found=true value=9
	// item:999 found=true value=998001
	// item:none found=false value=
	// deleted: 2
}

// Scan walks every shard; the error, if any, is available after the loop.
func ExampleClient_Scan() {
	seeds, stop := exampleCluster()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.New(ctx, client.Options{Seeds: seeds})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	for _, k := range []string{"user:ann", "user:bob", "user:cy", "order:1"} {
		_ = c.Put(ctx, k, []byte("v-"+k))
	}
	seq, errf := c.Scan(ctx, client.ScanOptions{Match: "user:*"})
	var got []string
	for key, val := range seq {
		got = append(got, key+"="+string(val))
	}
	if err := errf(); err != nil {
		panic(err)
	}
	slices.Sort(got) // Scan's order is unspecified
	fmt.Println(got)

	// Output:
	// [user:ann=v-user:ann user:bob=v-user:bob user:cy=v-user:cy]
}

// Typed helpers store values as JSON, or in any format through a Codec.
func ExampleGetJSON() {
	seeds, stop := exampleCluster()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.New(ctx, client.Options{Seeds: seeds})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	type Account struct {
		Owner   string
		Balance int
	}
	_ = client.PutJSON(ctx, c, "acct:1", Account{Owner: "ann", Balance: 120})
	a, err := client.GetJSON[Account](ctx, c, "acct:1")
	fmt.Printf("%+v %v\n", a, err)
	raw, _ := c.Get(ctx, "acct:1")
	fmt.Println(string(raw))
	_, err = client.GetJSON[Account](ctx, c, "acct:2")
	fmt.Println(errors.Is(err, client.ErrNotFound))

	// Output:
	// {Owner:ann Balance:120} <nil>
	// {"Owner":"ann","Balance":120}
	// true
}
