package resp

// Value is one parsed RESP reply, as returned by [Reader.ReadValue] and written by
// [Writer.Value].
//
// Type is the wire type byte:
//
//	'+' simple string (Str)    '-' error (Str, code included, e.g. "MOVED 1 a:6379")
//	':' integer (Int)          '$' bulk string (Str, or Null for $-1)
//	'*' array (Array, or Null for *-1)
//
// ReadValue also accepts a few RESP3 types, keeping their type byte: '_' null (Null), '#' boolean
// (Int 1 or 0), ',' double (Str holds its text), '%' map (Array holds keys and values
// alternately), '~' set and '>' push (Array). [Writer.Value] writes those downgraded to RESP2 the
// way Redis replies to a RESP2 client.
type Value struct {
	Type  byte
	Str   []byte
	Int   int64
	Array []Value
	Null  bool
}

// valueOverhead approximates the in-memory size of one Value, charged against MaxBuffered.
const valueOverhead = 72

// maxDepth bounds the nesting of replies: recursion is cheap, but an unbounded chain of "*1"
// headers would otherwise grow the goroutine stack until the runtime aborts the process, which
// cannot be recovered. Real replies nest a handful of levels.
const maxDepth = 512

// ReadValue reads one complete reply of any RESP2 type (and the RESP3 types listed at [Value]).
// Unlike ReadCommand, the Value it returns is freshly allocated and owned by the caller: it is
// meant for tests and for forwarding replies, not for the request hot path. Limits apply as for
// commands: MaxBulk to bulk strings, MaxArray to each array, MaxInline to simple strings, errors
// and headers, MaxBuffered to the whole reply. End of input before the reply starts is io.EOF;
// errors are sticky as for ReadCommand.
func (r *Reader) ReadValue() (Value, error) {
	if r.err != nil {
		return Value{}, r.err
	}
	if _, err := r.br.Peek(1); err != nil {
		return Value{}, err // nothing consumed: the caller may retry
	}
	r.held = 0
	v, err := r.readValue(0)
	if err != nil {
		r.err = err
		return Value{}, err
	}
	return v, nil
}

func (r *Reader) charge(n int) error {
	r.held += n
	if r.held > r.lim.MaxBuffered {
		return errBufferLimit()
	}
	return nil
}

func (r *Reader) readValue(depth int) (Value, error) {
	if depth > maxDepth {
		return Value{}, errTooDeep()
	}
	if err := r.charge(valueOverhead); err != nil {
		return Value{}, err
	}
	line, err := r.readLine()
	if err != nil {
		if err == errLineTooLong {
			return Value{}, errInvalidReply("reply line (too long)")
		}
		return Value{}, err
	}
	n := len(line)
	if n < 3 || line[n-2] != '\r' {
		return Value{}, errInvalidReply("reply line (no CRLF)")
	}
	t, body := line[0], line[1:n-2]
	v := Value{Type: t}
	switch t {
	case '+', '-', ',':
		if err := r.charge(len(body)); err != nil {
			return Value{}, err
		}
		v.Str = append([]byte{}, body...)
	case ':':
		if v.Int, err = parseReplyInt(body, "integer"); err != nil {
			return Value{}, err
		}
	case '#':
		switch string(body) {
		case "t":
			v.Int = 1
		case "f":
		default:
			return Value{}, errInvalidReply("boolean")
		}
	case '_':
		if len(body) != 0 {
			return Value{}, errInvalidReply("null")
		}
		v.Null = true
	case '$':
		l, err := parseReplyInt(body, "bulk length")
		if err != nil {
			return Value{}, err
		}
		if l == -1 {
			v.Null = true
			break
		}
		if l < -1 || l > int64(r.lim.MaxBulk) {
			return Value{}, errInvalidBulkLen()
		}
		if err := r.charge(int(l)); err != nil {
			return Value{}, err
		}
		if v.Str, err = readBulk(r.br, []byte{}, int(l)); err != nil {
			return Value{}, err
		}
		if _, err := r.br.Discard(2); err != nil {
			return Value{}, noEOF(err)
		}
	case '*', '%', '~', '>':
		l, err := parseReplyInt(body, "multibulk length")
		if err != nil {
			return Value{}, err
		}
		if l == -1 && t == '*' {
			v.Null = true
			break
		}
		if l < 0 || l > int64(r.lim.MaxArray) {
			return Value{}, errInvalidMultibulkLen()
		}
		if t == '%' {
			l *= 2 // a map of l pairs is read as 2l flat elements
		}
		// Reserve at most a small amount up front: the claimed count is not yet backed by bytes.
		v.Array = make([]Value, 0, min(int(l), 16))
		for i := int64(0); i < l; i++ {
			e, err := r.readValue(depth + 1)
			if err != nil {
				return Value{}, err
			}
			v.Array = append(v.Array, e)
		}
	default:
		return Value{}, errInvalidReplyType(t)
	}
	return v, nil
}

// parseReplyInt parses an integer body; a failure names what was being parsed.
func parseReplyInt(b []byte, what string) (int64, error) {
	n, ok := parseInt(b)
	if !ok {
		if what == "bulk length" {
			return 0, errInvalidBulkLen()
		}
		if what == "multibulk length" {
			return 0, errInvalidMultibulkLen()
		}
		return 0, errInvalidReply(what)
	}
	return n, nil
}
