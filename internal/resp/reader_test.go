package resp

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// readAll reads commands until an error and returns them (copied) and the final error.
func readAll(r *Reader) ([][]string, error) {
	var out [][]string
	for {
		args, err := r.ReadCommand()
		if err != nil {
			return out, err
		}
		cmd := make([]string, len(args))
		for i, a := range args {
			cmd[i] = string(a)
		}
		out = append(out, cmd)
	}
}

func equalCmds(a, b [][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if strings.Join(a[i], "\x00") != strings.Join(b[i], "\x00") || len(a[i]) != len(b[i]) {
			return false
		}
	}
	return true
}

func TestReadCommand(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want [][]string
	}{
		{"multibulk", "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n", [][]string{{"SET", "k", "value"}}},
		{"empty bulk", "*2\r\n$3\r\nGET\r\n$0\r\n\r\n", [][]string{{"GET", ""}}},
		{"binary bulk", "*1\r\n$4\r\n\r\n\x00\xff\r\n", [][]string{{"\r\n\x00\xff"}}},
		{"pipelined", "*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\nPING\r\n*1\r\n$4\r\nQUIT\r\n",
			[][]string{{"PING"}, {"ECHO", "hi"}, {"PING"}, {"QUIT"}}},
		{"empty multibulk skipped", "*0\r\n*-1\r\n*-7\r\n*1\r\n$1\r\nx\r\n", [][]string{{"x"}}},
		{"bulk trailer not checked (as Redis)", "*1\r\n$1\r\nxAB*1\r\n$1\r\ny\r\n", [][]string{{"x"}, {"y"}}},
		{"inline", "SET k v\r\n", [][]string{{"SET", "k", "v"}}},
		{"inline LF only", "PING\nPING\n", [][]string{{"PING"}, {"PING"}}},
		{"inline blanks", " \t SET\t k   v \r\n", [][]string{{"SET", "k", "v"}}},
		{"inline empty lines skipped", "\r\n\n   \r\nPING\r\n", [][]string{{"PING"}}},
		{"inline double quotes", `SET "a b" "\x41\n\t\\\"\q"` + "\r\n", [][]string{{"SET", "a b", "A\n\t\\\"q"}}},
		{"inline bad hex kept literal", `ECHO "\xZZ"` + "\n", [][]string{{"ECHO", "xZZ"}}},
		{"inline single quotes", `ECHO 'it\'s "x"' ''` + "\n", [][]string{{"ECHO", `it's "x"`, ""}}},
		{"inline quote glued to word", `ECHO a"b c" d` + "\n", [][]string{{"ECHO", "ab c", "d"}}},
		{"inline NUL ends the line", "ECHO a\x00 b\r\n", [][]string{{"ECHO", "a"}}},
		{"inline CR splits", "A\rB\r\n", [][]string{{"A", "B"}}},
		{"inline vertical tab is not a separator", "A\vB\n", [][]string{{"A\vB"}}},
		{"mixed", "PING\r\n*1\r\n$4\r\nPING\r\nECHO x\n", [][]string{{"PING"}, {"PING"}, {"ECHO", "x"}}},
	}
	readers := map[string]func(io.Reader) io.Reader{
		"whole":   func(r io.Reader) io.Reader { return r },
		"onebyte": iotest.OneByteReader,
		"half":    iotest.HalfReader,
	}
	for _, tt := range tests {
		for rname, wrap := range readers {
			t.Run(tt.name+"/"+rname, func(t *testing.T) {
				r := NewReader(wrap(strings.NewReader(tt.in)), Limits{})
				got, err := readAll(r)
				if err != io.EOF {
					t.Fatalf("err = %v, want io.EOF (got %q)", err, got)
				}
				if !equalCmds(got, tt.want) {
					t.Fatalf("got %q, want %q", got, tt.want)
				}
			})
		}
	}
}

func TestReadCommandErrors(t *testing.T) {
	small := Limits{MaxBulk: 10, MaxArray: 3, MaxInline: 16, MaxBuffered: 200}
	tests := []struct {
		name string
		in   string
		lim  Limits
		want string // error text; "" means io.ErrUnexpectedEOF
		cmds int    // commands read successfully before the error
	}{
		{"multibulk not a number", "*x\r\n", Limits{}, "Protocol error: invalid multibulk length", 0},
		{"multibulk plus sign", "*+1\r\n", Limits{}, "Protocol error: invalid multibulk length", 0},
		{"multibulk leading zero", "*01\r\n", Limits{}, "Protocol error: invalid multibulk length", 0},
		{"multibulk no CR", "*1\n$1\r\na\r\n", Limits{}, "Protocol error: invalid multibulk length", 0},
		{"multibulk empty", "*\r\n", Limits{}, "Protocol error: invalid multibulk length", 0},
		{"multibulk overflow", "*99999999999999999999\r\n", Limits{}, "Protocol error: invalid multibulk length", 0},
		{"multibulk over INT_MAX", "*2147483648\r\n", Limits{MaxArray: 1 << 40}, "Protocol error: invalid multibulk length", 0},
		{"multibulk over MaxArray", "*4\r\n", small, "Protocol error: invalid multibulk length", 0},
		{"multibulk default MaxArray", "*1048577\r\n", Limits{}, "Protocol error: invalid multibulk length", 0},
		{"expected dollar", "*1\r\nx3\r\nfoo\r\n", Limits{}, "Protocol error: expected '$', got 'x'", 0},
		{"expected dollar raw byte", "*1\r\n\xff3\r\nfoo\r\n", Limits{}, "Protocol error: expected '$', got '\xff'", 0},
		{"expected dollar after one", "*2\r\n$1\r\na\r\n:1\r\n", Limits{}, "Protocol error: expected '$', got ':'", 0},
		{"bulk negative", "*1\r\n$-1\r\n", Limits{}, "Protocol error: invalid bulk length", 0},
		{"bulk not a number", "*1\r\n$a\r\n", Limits{}, "Protocol error: invalid bulk length", 0},
		{"bulk minus zero", "*1\r\n$-0\r\n", Limits{}, "Protocol error: invalid bulk length", 0},
		{"bulk over MaxBulk", "*1\r\n$11\r\n", small, "Protocol error: invalid bulk length", 0},
		{"bulk over default MaxBulk", "*1\r\n$536870913\r\n", Limits{}, "Protocol error: invalid bulk length", 0},
		{"inline too big", strings.Repeat("a", 17), small, "Protocol error: too big inline request", 0},
		{"inline too big with newline", strings.Repeat("a", 17) + "\r\n", small, "Protocol error: too big inline request", 0},
		{"inline too big default", strings.Repeat("a", 64<<10+1) + "\r\n", Limits{}, "Protocol error: too big inline request", 0},
		{"inline longest allowed then error", strings.Repeat("a", 16) + "\r\n*x\r\n", small, "Protocol error: invalid multibulk length", 1},
		{"mbulk count too big", "*" + strings.Repeat("1", 17), small, "Protocol error: too big mbulk count string", 0},
		{"bulk count too big", "*1\r\n$" + strings.Repeat("1", 17), small, "Protocol error: too big bulk count string", 0},
		{"unbalanced double", "SET \"a b\r\n", Limits{}, "Protocol error: unbalanced quotes in request", 0},
		{"unbalanced single", "SET 'a\r\n", Limits{}, "Protocol error: unbalanced quotes in request", 0},
		{"closing quote glued to next word", "ECHO a\"b c\"d\r\n", Limits{}, "Protocol error: unbalanced quotes in request", 0},
		{"closing quote glued", "SET \"a\"b\r\n", Limits{}, "Protocol error: unbalanced quotes in request", 0},
		{"buffer limit", "*3\r\n$10\r\n0123456789\r\n$10\r\n0123456789\r\n$10\r\n0123456789\r\n",
			Limits{MaxBuffered: 100}, "Protocol error: query buffer limit exceeded", 0},
		{"buffer limit inline", "a b c d e f g h\r\n", Limits{MaxBuffered: 100}, "Protocol error: query buffer limit exceeded", 0},
		{"eof in header", "*1\r\n$3", Limits{}, "", 0},
		{"eof in bulk", "*1\r\n$3\r\nab", Limits{}, "", 0},
		{"eof in trailer", "*1\r\n$3\r\nabc\r", Limits{}, "", 0},
		{"eof before bulks", "*2\r\n$1\r\na\r\n", Limits{}, "", 0},
		{"eof in inline", "PING", Limits{}, "", 0},
		{"eof after good command", "PING\r\n*1\r\n", Limits{}, "", 1},
	}
	for _, tt := range tests {
		for _, onebyte := range []bool{false, true} {
			name := tt.name
			var src io.Reader = strings.NewReader(tt.in)
			if onebyte {
				name += "/onebyte"
				src = iotest.OneByteReader(src)
			}
			t.Run(name, func(t *testing.T) {
				r := NewReader(src, tt.lim)
				got, err := readAll(r)
				if len(got) != tt.cmds {
					t.Errorf("read %d commands (%q), want %d", len(got), got, tt.cmds)
				}
				if tt.want == "" {
					if err != io.ErrUnexpectedEOF {
						t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
					}
				} else {
					var pe *ProtocolError
					if !errors.As(err, &pe) || err.Error() != tt.want {
						t.Fatalf("err = %#v (%v), want ProtocolError %q", err, err, tt.want)
					}
				}
				// Errors after consumption are sticky.
				if _, err2 := r.ReadCommand(); err2 != err {
					t.Fatalf("second call err = %v, want sticky %v", err2, err)
				}
				if _, err2 := r.ReadValue(); err2 != err {
					t.Fatalf("ReadValue after error = %v, want sticky %v", err2, err)
				}
			})
		}
	}
}

func TestReadCommandCleanEOF(t *testing.T) {
	r := NewReader(strings.NewReader(""), Limits{})
	if _, err := r.ReadCommand(); err != io.EOF {
		t.Fatalf("err = %v, want io.EOF", err)
	}
}

// timeoutOnce fails its first Read (like an expired deadline on an idle connection) and then
// reads from r.
type timeoutOnce struct {
	r      io.Reader
	failed bool
}

var errTimeout = errors.New("i/o timeout")

func (t *timeoutOnce) Read(p []byte) (int, error) {
	if !t.failed {
		t.failed = true
		return 0, errTimeout
	}
	return t.r.Read(p)
}

func TestReadCommandErrorAtBoundaryNotSticky(t *testing.T) {
	r := NewReader(&timeoutOnce{r: strings.NewReader("PING\r\n")}, Limits{})
	if _, err := r.ReadCommand(); err != errTimeout {
		t.Fatalf("err = %v, want timeout", err)
	}
	args, err := r.ReadCommand()
	if err != nil || len(args) != 1 || string(args[0]) != "PING" {
		t.Fatalf("after timeout: %q, %v", args, err)
	}
}

func TestArgsDoNotOverlap(t *testing.T) {
	r := NewReader(strings.NewReader("*2\r\n$1\r\na\r\n$1\r\nb\r\n"), Limits{})
	args, err := r.ReadCommand()
	if err != nil {
		t.Fatal(err)
	}
	_ = append(args[0], 'X')
	if string(args[1]) != "b" {
		t.Fatalf("append to args[0] clobbered args[1]: %q", args[1])
	}
}

func TestBuffered(t *testing.T) {
	in := "*1\r\n$4\r\nPING\r\nPING\r\n"
	r := NewReader(strings.NewReader(in), Limits{})
	if _, err := r.ReadCommand(); err != nil {
		t.Fatal(err)
	}
	if got := r.Buffered(); got != len("PING\r\n") {
		t.Fatalf("Buffered = %d, want %d", got, len("PING\r\n"))
	}
	if _, err := r.ReadCommand(); err != nil {
		t.Fatal(err)
	}
	if got := r.Buffered(); got != 0 {
		t.Fatalf("Buffered = %d, want 0", got)
	}
}

func TestBigBulk(t *testing.T) {
	val := bytes.Repeat([]byte("0123456789abcdef"), (3<<20)/16+3)
	in := AppendCommand(nil, []byte("SET"), []byte("k"), val)
	in = AppendCommand(in, []byte("GET"), []byte("k"))
	r := NewReader(iotest.HalfReader(bytes.NewReader(in)), Limits{})
	args, err := r.ReadCommand()
	if err != nil {
		t.Fatal(err)
	}
	if len(args) != 3 || !bytes.Equal(args[2], val) {
		t.Fatalf("big value mangled: %d args, len %d", len(args), len(args[2]))
	}
	// The next command must not keep the multi-megabyte buffer alive.
	args, err = r.ReadCommand()
	if err != nil || string(args[0]) != "GET" {
		t.Fatalf("%q %v", args, err)
	}
	if cap(r.buf) > retainBuf {
		t.Fatalf("buffer of %d bytes retained after a big command", cap(r.buf))
	}
}

// TestClaimedLengthNotAllocated: a client claiming a huge bulk and sending little must cost
// memory in proportion to what it sent, not to what it claimed.
func TestClaimedLengthNotAllocated(t *testing.T) {
	in := "*1\r\n$536870912\r\n" + strings.Repeat("x", 10)
	r := NewReader(strings.NewReader(in), Limits{})
	if _, err := r.ReadCommand(); err != io.ErrUnexpectedEOF {
		t.Fatalf("err = %v", err)
	}
	if c := cap(r.buf); c > 2*readChunk {
		t.Fatalf("buffer grew to %d bytes for 10 bytes received", c)
	}
	// Same with a claimed array length.
	r = NewReader(strings.NewReader("*1048576\r\n$1\r\na\r\n"), Limits{})
	if _, err := r.ReadCommand(); err != io.ErrUnexpectedEOF {
		t.Fatalf("err = %v", err)
	}
	if c := cap(r.offs); c > 64 {
		t.Fatalf("offsets grew to %d for one argument received", c)
	}
}

// repeatReader yields its data over and over, a stand-in for an endless pipelined client.
type repeatReader struct {
	data []byte
	off  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.data[r.off:])
		n += c
		r.off = (r.off + c) % len(r.data)
	}
	return n, nil
}

func TestReadCommandNoAllocs(t *testing.T) {
	var stream []byte
	stream = AppendCommand(stream, []byte("SET"), []byte("key:1"), bytes.Repeat([]byte("v"), 100))
	stream = append(stream, "GET key:1\r\n"...)
	stream = append(stream, `ECHO "quoted \x41"`+"\r\n"...)
	r := NewReader(&repeatReader{data: stream}, Limits{})
	for range 100 { // warm the reused buffers
		if _, err := r.ReadCommand(); err != nil {
			t.Fatal(err)
		}
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := r.ReadCommand(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("ReadCommand allocates %v times per command, want 0", allocs)
	}
}

func TestLimitsDefaults(t *testing.T) {
	got := Limits{MaxBulk: 5}.withDefaults()
	want := DefaultLimits()
	want.MaxBulk = 5
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestParseInt(t *testing.T) {
	tests := []struct {
		in string
		n  int64
		ok bool
	}{
		{"0", 0, true}, {"1", 1, true}, {"-1", -1, true}, {"12345", 12345, true},
		{"9223372036854775807", 9223372036854775807, true},
		{"-9223372036854775808", -9223372036854775808, true},
		{"9223372036854775808", 0, false}, {"-9223372036854775809", 0, false},
		{"18446744073709551616", 0, false}, {"99999999999999999999", 0, false},
		{"", 0, false}, {"-", 0, false}, {"-0", 0, false}, {"01", 0, false}, {"+1", 0, false},
		{" 1", 0, false}, {"1 ", 0, false}, {"1a", 0, false}, {"123456789012345678901", 0, false},
	}
	for _, tt := range tests {
		n, ok := parseInt([]byte(tt.in))
		if n != tt.n || ok != tt.ok {
			t.Errorf("parseInt(%q) = %d, %v; want %d, %v", tt.in, n, ok, tt.n, tt.ok)
		}
	}
}

func TestReset(t *testing.T) {
	r := NewReader(strings.NewReader("*x\r\n"), Limits{})
	if _, err := r.ReadCommand(); err == nil {
		t.Fatal("want error")
	}
	r.Reset(strings.NewReader("PING\r\n"))
	args, err := r.ReadCommand()
	if err != nil || string(args[0]) != "PING" {
		t.Fatalf("after Reset: %q %v", args, err)
	}
}
