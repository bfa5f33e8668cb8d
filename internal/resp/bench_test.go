package resp

import (
	"fmt"
	"io"
	"testing"
)

// BenchmarkReadCommand parses a pipelined stream of SET commands, the shape redis-benchmark -P
// sends; it should report 0 allocs/op.
func BenchmarkReadCommand(b *testing.B) {
	var stream []byte
	val := make([]byte, 64)
	for i := range 1000 {
		stream = AppendCommand(stream, []byte("SET"), fmt.Appendf(nil, "key:%012d", i), val)
	}
	r := NewReader(&repeatReader{data: stream}, Limits{})
	b.SetBytes(int64(len(stream) / 1000))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.ReadCommand(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadCommandInline is the same stream sent inline (redis-cli and telnet users).
func BenchmarkReadCommandInline(b *testing.B) {
	var stream []byte
	for i := range 1000 {
		stream = fmt.Appendf(stream, "SET key:%012d %s\r\n", i, "0123456789012345678901234567890123456789012345678901234567890123")
	}
	r := NewReader(&repeatReader{data: stream}, Limits{})
	b.SetBytes(int64(len(stream) / 1000))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.ReadCommand(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriter encodes a typical mix of replies.
func BenchmarkWriter(b *testing.B) {
	w := NewWriter(io.Discard)
	val := make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		w.SimpleString("OK")
		w.Bulk(val)
		w.Int(42)
		w.Null()
		if w.Buffered() > 8<<10 {
			if err := w.Flush(); err != nil {
				b.Fatal(err)
			}
		}
	}
}
