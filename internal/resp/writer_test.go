package resp

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestWriter(t *testing.T) {
	tests := []struct {
		name  string
		write func(w *Writer)
		want  string
	}{
		{"simple", func(w *Writer) { w.SimpleString("OK") }, "+OK\r\n"},
		{"ok", func(w *Writer) { w.OK() }, "+OK\r\n"},
		{"simple sanitized", func(w *Writer) { w.SimpleString("a\r\nb") }, "+a  b\r\n"},
		{"error", func(w *Writer) { w.Error("ERR unknown command 'x'") }, "-ERR unknown command 'x'\r\n"},
		{"error sanitized", func(w *Writer) { w.Error("ERR bad\r\n+OK") }, "-ERR bad  +OK\r\n"},
		{"moved", func(w *Writer) { w.Error("MOVED 3999 127.0.0.1:6381") }, "-MOVED 3999 127.0.0.1:6381\r\n"},
		{"int", func(w *Writer) { w.Int(-9223372036854775808) }, ":-9223372036854775808\r\n"},
		{"bulk", func(w *Writer) { w.Bulk([]byte("a\r\nb")) }, "$4\r\na\r\nb\r\n"},
		{"bulk nil is empty", func(w *Writer) { w.Bulk(nil) }, "$0\r\n\r\n"},
		{"bulk string", func(w *Writer) { w.BulkString("hello") }, "$5\r\nhello\r\n"},
		{"null", func(w *Writer) { w.Null() }, "$-1\r\n"},
		{"null array", func(w *Writer) { w.NullArray() }, "*-1\r\n"},
		{"array", func(w *Writer) { w.ArrayHeader(2); w.Int(1); w.Null() }, "*2\r\n:1\r\n$-1\r\n"},
		{"array negative", func(w *Writer) { w.ArrayHeader(-1) }, "*-1\r\n"},
		{"value resp3 downgrade", func(w *Writer) {
			w.Value(Value{Type: '%', Array: []Value{{Type: ',', Str: []byte("1.5")}, {Type: '#', Int: 1}, {Type: '_', Null: true}, {Type: '~', Array: []Value{}}}})
		}, "*4\r\n$3\r\n1.5\r\n:1\r\n$-1\r\n*0\r\n"},
		{"value error sanitized", func(w *Writer) { w.Value(Value{Type: '-', Str: []byte("ERR x\ny")}) }, "-ERR x y\r\n"},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		w := NewWriter(&out)
		tt.write(w)
		if w.Buffered() != len(tt.want) {
			t.Errorf("%s: Buffered = %d, want %d", tt.name, w.Buffered(), len(tt.want))
		}
		if out.Len() != 0 {
			t.Errorf("%s: wrote before Flush", tt.name)
		}
		if err := w.Flush(); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if out.String() != tt.want {
			t.Errorf("%s: wrote %q, want %q", tt.name, out.String(), tt.want)
		}
	}
}

func TestWriterBadValue(t *testing.T) {
	var out bytes.Buffer
	w := NewWriter(&out)
	w.Value(Value{Type: 'x'})
	if err := w.Flush(); err == nil || !strings.Contains(err.Error(), "cannot encode") {
		t.Fatalf("Flush = %v, want encoding error", err)
	}
	w.Reset(&out)
	w.SimpleString("OK")
	if err := w.Flush(); err != nil || out.String() != "+OK\r\n" {
		t.Fatalf("after Reset: %q %v", out.String(), err)
	}
}

type failWriter struct{}

var errWrite = errors.New("write failed")

func (failWriter) Write([]byte) (int, error) { return 0, errWrite }

func TestWriterStickyWriteError(t *testing.T) {
	w := NewWriter(failWriter{})
	w.Bulk(make([]byte, 64<<10)) // larger than the buffer: written through at once
	w.SimpleString("OK")
	if err := w.Flush(); err != errWrite {
		t.Fatalf("Flush = %v, want %v", err, errWrite)
	}
}

// TestValueRoundTrip: what the Writer writes, ReadValue reads back unchanged.
func TestValueRoundTrip(t *testing.T) {
	values := []Value{
		{Type: '+', Str: []byte("OK")},
		{Type: '-', Str: []byte("ERR wrong number of arguments for 'get' command")},
		{Type: ':', Int: 1 << 62},
		{Type: '$', Str: []byte("bin\x00\r\n")},
		{Type: '$', Str: []byte{}},
		{Type: '$', Null: true},
		{Type: '*', Null: true},
		{Type: '*', Array: []Value{}},
		{Type: '*', Array: []Value{
			{Type: ':', Int: 0}, {Type: ':', Int: 5460},
			{Type: '*', Array: []Value{{Type: '$', Str: []byte("127.0.0.1")}, {Type: ':', Int: 7000}, {Type: '$', Str: bytes.Repeat([]byte("a"), 40)}}},
		}},
	}
	var out bytes.Buffer
	w := NewWriter(&out)
	for _, v := range values {
		w.Value(v)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	r := NewReader(&out, Limits{})
	for _, want := range values {
		got, err := r.ReadValue()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %+v, want %+v", got, want)
		}
	}
}

func TestWriterNoAllocs(t *testing.T) {
	w := NewWriter(io.Discard)
	val := []byte("value")
	v := Value{Type: '*', Array: []Value{{Type: '$', Str: val}, {Type: ':', Int: 7}}}
	allocs := testing.AllocsPerRun(1000, func() {
		w.SimpleString("OK")
		w.OK()
		w.Error("ERR x")
		w.Int(123456789)
		w.Bulk(val)
		w.BulkString("s")
		w.Null()
		w.NullArray()
		w.ArrayHeader(3)
		w.Value(v)
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Writer allocates %v times per round, want none", allocs)
	}
}
