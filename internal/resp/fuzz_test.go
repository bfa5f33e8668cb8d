package resp

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

func FuzzReadCommand(f *testing.F) {
	for _, s := range []string{
		"*1\r\n$4\r\nPING\r\n",
		"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
		"SET k v\r\nGET k\n\r\n",
		`ECHO "a\x41\n" 'b\'c'` + "\r\n",
		"*0\r\n*-1\r\n",
		"*1\r\n$2000\r\nxx",
		"*1\r\nx\r\n",
		"\"unbalanced\r\n",
		"*99999999999999999999\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// Small limits, so that the fuzzer reaches every one of them quickly and memory bounds are
		// easy to assert.
		lim := Limits{MaxBulk: 1 << 10, MaxArray: 64, MaxInline: 256, MaxBuffered: 8 << 10}
		r := NewReader(bytes.NewReader(data), lim)
		var cmds [][][]byte
		for {
			args, err := r.ReadCommand()
			if err != nil {
				var pe *ProtocolError
				if err != io.EOF && err != io.ErrUnexpectedEOF && !errors.As(err, &pe) {
					t.Fatalf("unexpected error type %T: %v", err, err)
				}
				break
			}
			if len(args) == 0 || len(args) > lim.MaxArray {
				t.Fatalf("command with %d args", len(args))
			}
			total := 0
			cmd := make([][]byte, len(args))
			for i, a := range args {
				if len(a) > lim.MaxBulk {
					t.Fatalf("arg of %d bytes > MaxBulk", len(a))
				}
				total += len(a)
				cmd[i] = bytes.Clone(a)
			}
			if total > lim.MaxBuffered {
				t.Fatalf("command holds %d bytes > MaxBuffered", total)
			}
			cmds = append(cmds, cmd)
			// Memory held must stay bounded by the limits, whatever was claimed.
			if c := cap(r.buf); c > 2*lim.MaxBuffered+2*readChunk {
				t.Fatalf("buffer capacity %d", c)
			}
			if c := cap(r.line); c > 2*(lim.MaxInline+readBufSize) {
				t.Fatalf("line capacity %d", c)
			}
		}
		if c := cap(r.buf); c > 2*lim.MaxBuffered+2*readChunk {
			t.Fatalf("buffer capacity %d after error", c)
		}
		// Whatever was accepted re-encodes to a multibulk stream that parses back identically.
		var enc []byte
		for _, c := range cmds {
			enc = AppendCommand(enc, c...)
		}
		r2 := NewReader(bytes.NewReader(enc), Limits{})
		for _, want := range cmds {
			got, err := r2.ReadCommand()
			if err != nil {
				t.Fatalf("re-encoded command: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("round trip: got %q, want %q", got, want)
			}
		}
		// The reply parser shares the line and bulk code; it must not panic either.
		rv := NewReader(bytes.NewReader(data), lim)
		for {
			if _, err := rv.ReadValue(); err != nil {
				break
			}
		}
	})
}
