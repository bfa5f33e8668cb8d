package resp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math"
	"slices"
)

const (
	// readBufSize is the bufio buffer per connection: as large as Redis's PROTO_IOBUF_LEN so a
	// pipelined burst is parsed from one read, small enough for many thousands of connections.
	readBufSize = 16 << 10
	// readChunk is the most a bulk read allocates ahead of data actually received. Beyond it the
	// buffer grows by at most the amount already received, so memory stays within about twice
	// the bytes the peer really sent, whatever length it claimed.
	readChunk = 64 << 10
	// argOverhead approximates the bookkeeping bytes held per argument (two offsets and one
	// slice header), charged against Limits.MaxBuffered so that a flood of empty arguments is
	// bounded like a flood of bytes.
	argOverhead = 40
	// retainBuf and retainArgs bound what a Reader keeps between commands: after a huge command
	// the buffers are dropped rather than pinned for the life of the connection (Redis shrinks
	// its query buffer for the same reason).
	retainBuf  = 1 << 20
	retainArgs = 4096
)

// errLineTooLong is internal: callers turn it into the Redis text that fits the line's role.
var errLineTooLong = errors.New("resp: line too long")

// Reader parses RESP from a byte stream. It is not safe for concurrent use; a server has one per
// connection.
//
// The zero value is not usable; create Readers with [NewReader].
type Reader struct {
	br  *bufio.Reader
	lim Limits

	// buf holds the bytes of all arguments of the current command back to back; offs holds
	// their [start,end) pairs while parsing (buf may move as it grows), and args is rebuilt
	// from offs at the end. All three are reused from command to command.
	buf  []byte
	offs []int
	args [][]byte
	// line collects a header or inline line that does not fit in the bufio buffer.
	line []byte
	// held counts bytes charged against MaxBuffered for the value ReadValue is reading.
	held int
	// err is sticky: once part of a command was consumed and reading failed, the position in
	// the stream is lost and every later call returns the same error.
	err error
}

// NewReader returns a Reader reading from r with the given limits (zero fields take defaults).
func NewReader(r io.Reader, l Limits) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, readBufSize), lim: l.withDefaults()}
}

// SetLimits changes the limits applied from the next command on (zero fields take defaults).
// A server uses it to accept only small requests from a connection until it authenticates.
func (r *Reader) SetLimits(l Limits) { r.lim = l.withDefaults() }

// Reset discards all state and makes the Reader read from r, keeping its limits and buffers, so
// Readers can be pooled.
func (r *Reader) Reset(rd io.Reader) {
	r.br.Reset(rd)
	r.err = nil
	r.held = 0
	r.shrink()
}

// Buffered returns the number of bytes already read from the underlying reader and not yet
// parsed. A server flushes its replies when this is zero: any other value means a pipelined
// request is pending and its reply can share the same write.
func (r *Reader) Buffered() int { return r.br.Buffered() }

// ReadCommand reads the next command: a multibulk request (*N\r\n$len\r\narg\r\n...) or an inline
// one (a line of space-separated words, with Redis's quoting rules). As Redis does, it skips empty
// inline lines and multibulk requests of zero or negative length, so the result always has at
// least one argument.
//
// The returned slice and the arguments in it are owned by the Reader and valid only until the
// next call to ReadCommand, ReadValue or Reset: they are reused so that reading a command
// allocates nothing. Copy what must outlive the command. Each argument's capacity is clipped to
// its length, so appending to one never overwrites another.
//
// At the end of input between commands it returns io.EOF; in the middle of a command,
// io.ErrUnexpectedEOF. Malformed input or input beyond the limits returns a *ProtocolError. An
// error from the underlying reader before any byte of a command was consumed (such as a read
// deadline expiring on an idle connection) is returned as is and the Reader remains usable; any
// error after that is sticky and returned by every later call.
func (r *Reader) ReadCommand() ([][]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	r.shrink()
	for {
		b, err := r.br.Peek(1)
		if err != nil {
			return nil, err // nothing consumed: the caller may retry
		}
		var ok bool
		if b[0] == '*' {
			ok, err = r.readMultibulk()
		} else {
			ok, err = r.readInline()
		}
		if err != nil {
			r.err = err
			return nil, err
		}
		if ok {
			return r.args, nil
		}
	}
}

// shrink drops buffers that a past outsized command left large, and resets the rest.
func (r *Reader) shrink() {
	if cap(r.buf) > retainBuf {
		r.buf = nil
	}
	if cap(r.offs) > 2*retainArgs {
		r.offs = nil
	}
	if cap(r.args) > retainArgs {
		r.args = nil
	}
	if cap(r.line) > 2*readBufSize {
		r.line = nil
	}
	r.buf, r.offs, r.args = r.buf[:0], r.offs[:0], r.args[:0]
}

// buildArgs turns the offsets gathered while parsing into argument slices of the final buf.
func (r *Reader) buildArgs() {
	r.args = r.args[:0]
	for i := 0; i+1 < len(r.offs); i += 2 {
		s, e := r.offs[i], r.offs[i+1]
		r.args = append(r.args, r.buf[s:e:e])
	}
}

// readMultibulk parses one multibulk request. ok is false when the request is empty (*0, *-1),
// which Redis silently skips.
func (r *Reader) readMultibulk() (ok bool, err error) {
	line, err := r.readLine()
	if err != nil {
		if err == errLineTooLong {
			return false, errTooBigMbulkCount()
		}
		return false, err
	}
	n, valid := parseLineInt(line[1:]) // line[0] == '*'
	if !valid || n > math.MaxInt32 || n > int64(r.lim.MaxArray) {
		return false, errInvalidMultibulkLen()
	}
	if n <= 0 {
		return false, nil
	}
	r.buf, r.offs = r.buf[:0], r.offs[:0]
	for i := int64(0); i < n; i++ {
		line, err := r.readLine()
		if err != nil {
			if err == errLineTooLong {
				return false, errTooBigBulkCount()
			}
			return false, err
		}
		if line[0] != '$' {
			return false, errExpectedDollar(line[0])
		}
		l, valid := parseLineInt(line[1:])
		if !valid || l < 0 || l > int64(r.lim.MaxBulk) {
			return false, errInvalidBulkLen()
		}
		if int64(len(r.buf))+int64(len(r.offs)/2+1)*argOverhead+l > int64(r.lim.MaxBuffered) {
			return false, errBufferLimit()
		}
		start := len(r.buf)
		if r.buf, err = readBulk(r.br, r.buf, int(l)); err != nil {
			return false, err
		}
		// Like Redis, skip the two bytes after the payload without checking they are CRLF.
		if _, err := r.br.Discard(2); err != nil {
			return false, noEOF(err)
		}
		r.offs = append(r.offs, start, len(r.buf))
	}
	r.buildArgs()
	return true, nil
}

// readInline parses one inline request line. ok is false for a line with no words, which Redis
// skips.
func (r *Reader) readInline() (ok bool, err error) {
	line, err := r.readLine()
	if err != nil {
		if err == errLineTooLong {
			return false, errTooBigInline()
		}
		return false, err
	}
	line = line[:len(line)-1] // '\n'
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	// Redis NUL-terminates the line and splits it as a C string: a NUL byte ends it.
	if i := bytes.IndexByte(line, 0); i >= 0 {
		line = line[:i]
	}
	r.buf, r.offs = r.buf[:0], r.offs[:0]
	if !r.splitInline(line) {
		return false, errUnbalancedQuotes()
	}
	if len(r.offs) == 0 {
		return false, nil
	}
	if len(r.buf)+len(r.offs)/2*argOverhead > r.lim.MaxBuffered {
		return false, errBufferLimit()
	}
	r.buildArgs()
	return true, nil
}

// isSpace is C's isspace in the "C" locale, which sdssplitargs uses to skip blanks.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

// isInlineSpecial reports the bytes that end or change an unquoted run in splitInline.
func isInlineSpecial(c byte) bool {
	return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '"' || c == '\''
}

func isHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

func hexVal(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// splitInline splits line into arguments appended to r.buf/r.offs, following Redis's
// sdssplitargs exactly: "double quotes" with \n \r \t \b \a \xHH and \<any> escapes,
// 'single quotes' with only \' escaped, and a closing quote that must be followed by a blank or
// the end of the line. It reports false for unbalanced quotes.
func (r *Reader) splitInline(line []byte) bool {
	n := len(line)
	// at mimics reading a NUL-terminated C string: past the end is 0 (line holds no NUL).
	at := func(i int) byte {
		if i < n {
			return line[i]
		}
		return 0
	}
	i := 0
	for {
		for i < n && isSpace(line[i]) {
			i++
		}
		if i >= n {
			return true
		}
		start := len(r.buf)
		inq, insq := false, false
		for done := false; !done; {
			c := at(i)
			switch {
			case inq:
				switch {
				case c == '\\' && at(i+1) == 'x' && isHex(at(i+2)) && isHex(at(i+3)):
					r.buf = append(r.buf, hexVal(at(i+2))<<4|hexVal(at(i+3)))
					i += 3
				case c == '\\' && at(i+1) != 0:
					i++
					e := at(i)
					switch e {
					case 'n':
						e = '\n'
					case 'r':
						e = '\r'
					case 't':
						e = '\t'
					case 'b':
						e = '\b'
					case 'a':
						e = '\a'
					}
					r.buf = append(r.buf, e)
				case c == '"':
					if nx := at(i + 1); nx != 0 && !isSpace(nx) {
						return false
					}
					done = true
				case c == 0:
					return false
				default:
					r.buf = append(r.buf, c)
				}
			case insq:
				switch {
				case c == '\\' && at(i+1) == '\'':
					i++
					r.buf = append(r.buf, '\'')
				case c == '\'':
					if nx := at(i + 1); nx != 0 && !isSpace(nx) {
						return false
					}
					done = true
				case c == 0:
					return false
				default:
					r.buf = append(r.buf, c)
				}
			default:
				switch c {
				case ' ', '\n', '\r', '\t', 0:
					done = true
				case '"':
					inq = true
				case '\'':
					insq = true
				default:
					// Copy the whole run of ordinary bytes at once: plain words are the
					// common case and byte-at-a-time appends dominate otherwise.
					j := i + 1
					for j < n && !isInlineSpecial(line[j]) {
						j++
					}
					r.buf = append(r.buf, line[i:j]...)
					i = j - 1 // the step below moves past the run
				}
			}
			if at(i) != 0 {
				i++
			}
		}
		r.offs = append(r.offs, start, len(r.buf))
	}
}

// readLine returns the next line including its final '\n'. The result aliases the bufio buffer
// or r.line and is valid only until the next read. A line whose content (without "\r\n") is
// longer than MaxInline yields errLineTooLong; a line longer than the bufio buffer is gathered in
// r.line, so memory stays bounded by MaxInline. End of input inside a line is
// io.ErrUnexpectedEOF: callers only read lines once a message has started.
func (r *Reader) readLine() ([]byte, error) {
	longest := r.lim.MaxInline + 2 // with "\r\n"
	line, err := r.br.ReadSlice('\n')
	if err == nil {
		if len(line) > longest && contentLen(line) > r.lim.MaxInline {
			return nil, errLineTooLong
		}
		return line, nil
	}
	if err != bufio.ErrBufferFull {
		if partialLen(line) > r.lim.MaxInline {
			return nil, errLineTooLong
		}
		return nil, noEOF(err)
	}
	r.line = append(r.line[:0], line...)
	for {
		if partialLen(r.line) > r.lim.MaxInline {
			return nil, errLineTooLong
		}
		line, err = r.br.ReadSlice('\n')
		r.line = append(r.line, line...)
		if err == nil {
			if len(r.line) > longest && contentLen(r.line) > r.lim.MaxInline {
				return nil, errLineTooLong
			}
			return r.line, nil
		}
		if err != bufio.ErrBufferFull {
			if partialLen(r.line) > r.lim.MaxInline {
				return nil, errLineTooLong
			}
			return nil, noEOF(err)
		}
	}
}

// contentLen is the length of a line without its "\n" or "\r\n" terminator.
func contentLen(line []byte) int {
	n := len(line) - 1
	if n > 0 && line[n-1] == '\r' {
		n--
	}
	return n
}

// partialLen is the content length of a line whose '\n' has not arrived: a final '\r' may be
// the first half of its terminator.
func partialLen(b []byte) int {
	n := len(b)
	if n > 0 && b[n-1] == '\r' {
		n--
	}
	return n
}

// readBulk appends exactly n bytes from br to dst. It never reserves more than readChunk bytes
// (or as many as already received, once that is larger) ahead of the data actually arriving, so a
// peer cannot make it allocate a claimed length it does not send.
func readBulk(br *bufio.Reader, dst []byte, n int) ([]byte, error) {
	start := len(dst)
	for n > 0 {
		want := min(n, max(readChunk, len(dst)-start))
		dst = slices.Grow(dst, want)
		got, err := io.ReadFull(br, dst[len(dst):len(dst)+want])
		dst = dst[:len(dst)+got]
		n -= got
		if err != nil {
			return dst, noEOF(err)
		}
	}
	return dst, nil
}

// noEOF turns io.EOF into io.ErrUnexpectedEOF, for reads in the middle of a message.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// parseLineInt parses the decimal integer of a header line (after its type byte), which must end
// in "\r\n".
func parseLineInt(b []byte) (int64, bool) {
	n := len(b)
	if n < 2 || b[n-2] != '\r' || b[n-1] != '\n' {
		return 0, false
	}
	return parseInt(b[:n-2])
}

// parseInt parses a signed decimal integer with Redis's string2ll rules: no sign other than a
// leading '-', no leading zeros, no blanks, no "-0", and no overflow of int64.
func parseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	if len(b) == 1 && b[0] == '0' {
		return 0, true
	}
	i, neg := 0, false
	if b[0] == '-' {
		if len(b) == 1 {
			return 0, false
		}
		i, neg = 1, true
	}
	if b[i] < '1' || b[i] > '9' {
		return 0, false
	}
	var v uint64
	for ; i < len(b); i++ {
		c := b[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if v > math.MaxUint64/10 {
			return 0, false
		}
		v *= 10
		d := uint64(c - '0')
		if v > math.MaxUint64-d {
			return 0, false
		}
		v += d
	}
	if neg {
		if v > 1<<63 {
			return 0, false
		}
		return -int64(v-1) - 1, true
	}
	if v > math.MaxInt64 {
		return 0, false
	}
	return int64(v), true
}
