package resp

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// writeBufSize matches the read side: one buffer holds the replies to a pipelined burst.
const writeBufSize = 16 << 10

// Writer encodes RESP2 replies into a buffer in front of an io.Writer. Nothing reaches the
// underlying writer until the buffer fills or [Writer.Flush] is called, so a server answers a
// whole pipeline with one write.
//
// The encoding methods return no error: a write error is remembered (as bufio.Writer does) and
// reported by Flush, which keeps the reply code of every command free of error plumbing. They
// do not allocate. A Writer is not safe for concurrent use.
type Writer struct {
	bw      *bufio.Writer
	scratch [32]byte // header assembly: type byte, up to 20 digits, CRLF
	err     error    // first encoding error (see Value); write errors live in bw
}

// NewWriter returns a Writer buffering replies for w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{bw: bufio.NewWriterSize(w, writeBufSize)}
}

// Reset discards unflushed output and any error and makes the Writer write to w, so Writers can
// be pooled.
func (w *Writer) Reset(wr io.Writer) {
	w.bw.Reset(wr)
	w.err = nil
}

// Flush writes the buffered replies to the underlying writer and returns the first error met
// since the Writer was created or Reset, if any.
func (w *Writer) Flush() error {
	if w.err != nil {
		return w.err
	}
	return w.bw.Flush()
}

// Buffered returns the number of bytes written into the buffer and not yet flushed.
func (w *Writer) Buffered() int { return w.bw.Buffered() }

// header writes a type byte, a decimal number and CRLF in one buffered write.
func (w *Writer) header(t byte, n int64) {
	b := append(w.scratch[:0], t)
	b = strconv.AppendInt(b, n, 10)
	b = append(b, '\r', '\n')
	w.bw.Write(b)
}

// SimpleString writes a status reply, "+s\r\n". CR and LF in s would end the line early and
// desynchronise the client, so they are written as spaces (as Redis does for error texts).
func (w *Writer) SimpleString(s string) {
	w.bw.WriteByte('+')
	writeLineString(w.bw, s)
}

// OK writes the status reply "+OK\r\n", the most common reply of all, in one buffered write.
func (w *Writer) OK() { w.bw.WriteString("+OK\r\n") }

// Error writes an error reply, "-s\r\n". s starts with the error code, for example
// "ERR unknown command 'x'" or "MOVED 3999 127.0.0.1:6381"; the leading '-' is added here. CR and
// LF in s are written as spaces, as Redis's addReplyErrorFormat does.
func (w *Writer) Error(s string) {
	w.bw.WriteByte('-')
	writeLineString(w.bw, s)
}

// Int writes an integer reply, ":n\r\n".
func (w *Writer) Int(n int64) { w.header(':', n) }

// Bulk writes a bulk string reply, "$len\r\nb\r\n". A nil b is the empty string, not a null:
// use [Writer.Null] for that.
func (w *Writer) Bulk(b []byte) {
	w.header('$', int64(len(b)))
	w.bw.Write(b)
	w.bw.WriteString("\r\n")
}

// BulkString writes s as a bulk string reply.
func (w *Writer) BulkString(s string) {
	w.header('$', int64(len(s)))
	w.bw.WriteString(s)
	w.bw.WriteString("\r\n")
}

// Null writes the RESP2 null bulk string, "$-1\r\n" (GET of a missing key).
func (w *Writer) Null() { w.bw.WriteString("$-1\r\n") }

// NullArray writes the RESP2 null array, "*-1\r\n" (for example a timed-out blocking pop).
func (w *Writer) NullArray() { w.bw.WriteString("*-1\r\n") }

// ArrayHeader writes "*n\r\n"; the caller then writes the n elements. A negative n writes
// "*-1\r\n", the null array.
func (w *Writer) ArrayHeader(n int) {
	if n < 0 {
		w.NullArray()
		return
	}
	w.header('*', int64(n))
}

// Value writes v, recursively. RESP3-only types are downgraded as Redis does for RESP2 clients:
// '_' as the null bulk string, '#' as the integer 1 or 0, ',' as a bulk string, '%' as a flat
// array of keys and values, '~' and '>' as arrays. A Value of any other type writes nothing and
// makes Flush fail, since there is no faithful encoding for it.
func (w *Writer) Value(v Value) {
	switch v.Type {
	case '+':
		w.bw.WriteByte('+')
		writeLineBytes(w.bw, v.Str)
	case '-':
		w.bw.WriteByte('-')
		writeLineBytes(w.bw, v.Str)
	case ':', '#':
		w.Int(v.Int)
	case '$':
		if v.Null {
			w.Null()
		} else {
			w.Bulk(v.Str)
		}
	case '_':
		w.Null()
	case ',':
		w.Bulk(v.Str)
	case '*', '%', '~', '>':
		if v.Null {
			w.NullArray()
			return
		}
		w.header('*', int64(len(v.Array)))
		for i := range v.Array {
			w.Value(v.Array[i])
		}
	default:
		if w.err == nil {
			w.err = fmt.Errorf("resp: cannot encode a value of type %q", v.Type)
		}
	}
}

// writeLineString writes s with CR and LF replaced by spaces, then CRLF.
func writeLineString(bw *bufio.Writer, s string) {
	for {
		i := strings.IndexAny(s, "\r\n")
		if i < 0 {
			break
		}
		bw.WriteString(s[:i])
		bw.WriteByte(' ')
		s = s[i+1:]
	}
	bw.WriteString(s)
	bw.WriteString("\r\n")
}

// writeLineBytes is writeLineString for a byte slice.
func writeLineBytes(bw *bufio.Writer, b []byte) {
	for {
		i := bytes.IndexAny(b, "\r\n")
		if i < 0 {
			break
		}
		bw.Write(b[:i])
		bw.WriteByte(' ')
		b = b[i+1:]
	}
	bw.Write(b)
	bw.WriteString("\r\n")
}
