package linearize

import (
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

func TestModelAcceptsAndRejects(t *testing.T) {
	r := NewRecorder()
	// put(x, a) then append(x, b) sequentially, then a read of "ab": linearizable.
	r.ops = []porcupine.Operation{
		{ClientId: 0, Input: Input{Kind: Put, Key: "x", Value: "a"}, Call: 0, Output: Output{}, Return: 10},
		{ClientId: 1, Input: Input{Kind: Append, Key: "x", Value: "b"}, Call: 20, Output: Output{}, Return: 30},
		{ClientId: 0, Input: Input{Kind: Get, Key: "x"}, Call: 40, Output: Output{Value: "ab", Found: true}, Return: 50},
	}
	if res, _ := r.Check(time.Second, ""); res != porcupine.Ok {
		t.Fatalf("sequential history judged %v", res)
	}
	// A read after the append completed that misses it is a stale read.
	r.ops[2].Output = Output{Value: "a", Found: true}
	if res, _ := r.Check(time.Second, ""); res != porcupine.Illegal {
		t.Fatalf("stale read judged %v", res)
	}
	// If the append's outcome is unknown, both "a" and "ab" are allowed.
	r.ops[1].Output = Output{Unknown: true}
	r.ops[1].Return = 1 << 62
	if res, _ := r.Check(time.Second, ""); res != porcupine.Ok {
		t.Fatalf("unknown append judged %v", res)
	}
	// A missing key must not read as found.
	r.ops = []porcupine.Operation{
		{Input: Input{Kind: Get, Key: "y"}, Call: 0, Output: Output{Found: true}, Return: 1},
	}
	if res, _ := r.Check(time.Second, ""); res != porcupine.Illegal {
		t.Fatalf("phantom read judged %v", res)
	}
}
