package resp

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReadValue(t *testing.T) {
	bulk := func(s string) Value { return Value{Type: '$', Str: []byte(s)} }
	tests := []struct {
		name string
		in   string
		want Value
	}{
		{"simple", "+OK\r\n", Value{Type: '+', Str: []byte("OK")}},
		{"empty simple", "+\r\n", Value{Type: '+', Str: []byte{}}},
		{"error", "-MOVED 1 127.0.0.1:7001\r\n", Value{Type: '-', Str: []byte("MOVED 1 127.0.0.1:7001")}},
		{"int", ":-42\r\n", Value{Type: ':', Int: -42}},
		{"bulk", "$5\r\nhe\r\no\r\n", bulk("he\r\no")},
		{"empty bulk", "$0\r\n\r\n", bulk("")},
		{"null bulk", "$-1\r\n", Value{Type: '$', Null: true}},
		{"null array", "*-1\r\n", Value{Type: '*', Null: true}},
		{"empty array", "*0\r\n", Value{Type: '*', Array: []Value{}}},
		{"nested", "*2\r\n*1\r\n:1\r\n$1\r\nx\r\n", Value{Type: '*', Array: []Value{
			{Type: '*', Array: []Value{{Type: ':', Int: 1}}}, bulk("x")}}},
		{"resp3 null", "_\r\n", Value{Type: '_', Null: true}},
		{"resp3 bool", "#t\r\n", Value{Type: '#', Int: 1}},
		{"resp3 false", "#f\r\n", Value{Type: '#'}},
		{"resp3 double", ",3.5\r\n", Value{Type: ',', Str: []byte("3.5")}},
		{"resp3 map", "%1\r\n+k\r\n:1\r\n", Value{Type: '%', Array: []Value{{Type: '+', Str: []byte("k")}, {Type: ':', Int: 1}}}},
		{"resp3 set", "~1\r\n:1\r\n", Value{Type: '~', Array: []Value{{Type: ':', Int: 1}}}},
	}
	for _, tt := range tests {
		for _, onebyte := range []bool{false, true} {
			var src io.Reader = strings.NewReader(tt.in + tt.in)
			if onebyte {
				src = iotest.OneByteReader(src)
			}
			r := NewReader(src, Limits{})
			for i := range 2 {
				v, err := r.ReadValue()
				if err != nil {
					t.Fatalf("%s: %v", tt.name, err)
				}
				if !reflect.DeepEqual(v, tt.want) {
					t.Fatalf("%s #%d: got %+v, want %+v", tt.name, i, v, tt.want)
				}
			}
			if _, err := r.ReadValue(); err != io.EOF {
				t.Fatalf("%s: at end err = %v, want io.EOF", tt.name, err)
			}
		}
	}
}

func TestReadValueErrors(t *testing.T) {
	small := Limits{MaxBulk: 10, MaxArray: 3, MaxInline: 16, MaxBuffered: 1000}
	tests := []struct {
		name string
		in   string
		lim  Limits
		want string // "" means io.ErrUnexpectedEOF
	}{
		{"unknown type", "?x\r\n", Limits{}, "Protocol error: invalid reply type byte '?'"},
		{"no CR", "+OK\n", Limits{}, "Protocol error: invalid reply line (no CRLF)"},
		{"bad int", ":1x\r\n", Limits{}, "Protocol error: invalid integer"},
		{"bad bulk len", "$-2\r\n", Limits{}, "Protocol error: invalid bulk length"},
		{"bulk over limit", "$11\r\n", small, "Protocol error: invalid bulk length"},
		{"bad array len", "*x\r\n", Limits{}, "Protocol error: invalid multibulk length"},
		{"array over limit", "*4\r\n", small, "Protocol error: invalid multibulk length"},
		{"map over limit", "%4\r\n", small, "Protocol error: invalid multibulk length"},
		{"map huge", "%9223372036854775807\r\n", Limits{}, "Protocol error: invalid multibulk length"},
		{"null map", "%-1\r\n", Limits{}, "Protocol error: invalid multibulk length"},
		{"bad bool", "#x\r\n", Limits{}, "Protocol error: invalid boolean"},
		{"bad null", "_x\r\n", Limits{}, "Protocol error: invalid null"},
		{"line too long", "+" + strings.Repeat("a", 17) + "\r\n", small, "Protocol error: invalid reply line (too long)"},
		{"too deep", strings.Repeat("*1\r\n", maxDepth+2) + ":1\r\n", Limits{}, "Protocol error: reply nested too deeply"},
		{"buffer limit", "*3\r\n$10\r\n0123456789\r\n$10\r\n0123456789\r\n$10\r\n0123456789\r\n",
			Limits{MaxBuffered: 300}, "Protocol error: query buffer limit exceeded"},
		{"eof in array", "*2\r\n:1\r\n", Limits{}, ""},
		{"eof in bulk", "$3\r\nab", Limits{}, ""},
		{"eof in line", "+OK", Limits{}, ""},
	}
	for _, tt := range tests {
		r := NewReader(strings.NewReader(tt.in), tt.lim)
		_, err := r.ReadValue()
		if tt.want == "" {
			if err != io.ErrUnexpectedEOF {
				t.Errorf("%s: err = %v, want io.ErrUnexpectedEOF", tt.name, err)
			}
			continue
		}
		var pe *ProtocolError
		if !errors.As(err, &pe) || err.Error() != tt.want {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
}

// TestReadValueClaimedLength: a claimed bulk length is not allocated before its bytes arrive,
// measured through the runtime's own accounting of allocated bytes.
func TestReadValueClaimedLength(t *testing.T) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	r := NewReader(strings.NewReader("$536870912\r\n"+strings.Repeat("x", 100)), Limits{})
	if _, err := r.ReadValue(); err != io.ErrUnexpectedEOF {
		t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
	}
	runtime.ReadMemStats(&after)
	if d := after.TotalAlloc - before.TotalAlloc; d > 8<<20 {
		t.Fatalf("reading 100 bytes of a claimed 512 MiB bulk allocated %d bytes", d)
	}
}

func TestCommandRoundTrip(t *testing.T) {
	cmds := [][][]byte{
		{[]byte("SET"), []byte("k"), []byte("v")},
		{[]byte("ECHO"), []byte("")},
		{[]byte("X"), bytes.Repeat([]byte{0, '\r', '\n'}, 1000)},
	}
	var buf []byte
	for _, c := range cmds {
		buf = AppendCommand(buf, c...)
	}
	r := NewReader(iotest.OneByteReader(bytes.NewReader(buf)), Limits{})
	for _, want := range cmds {
		got, err := r.ReadCommand()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	if got := string(AppendCommand([]byte("x"), []byte("GET"), []byte("k"))); got != "x*2\r\n$3\r\nGET\r\n$1\r\nk\r\n" {
		t.Fatalf("AppendCommand = %q", got)
	}
}
