package resp

// Limits bound what a [Reader] accepts from its peer. A zero (or negative) field means "use the
// default" (see [DefaultLimits]), so Limits{} is a valid configuration.
type Limits struct {
	// MaxBulk is the largest bulk string accepted, like Redis's proto-max-bulk-len.
	MaxBulk int
	// MaxArray is the largest number of elements in a multibulk command or array reply.
	MaxArray int
	// MaxInline is the longest inline command line, and the longest header line ("*N", "$N",
	// simple string), like Redis's PROTO_INLINE_MAX_SIZE.
	MaxInline int
	// MaxBuffered bounds the memory held for one command or reply: the argument bytes plus a
	// fixed per-argument bookkeeping overhead. It plays the role of Redis's
	// client-query-buffer-limit.
	MaxBuffered int
}

// Default limit values; they mirror Redis's defaults where Redis has one.
const (
	// DefaultMaxBulk is Redis's default proto-max-bulk-len (512 MiB).
	DefaultMaxBulk = 512 << 20
	// DefaultMaxArray caps multibulk length at 1M elements, the cap Redis used before 7.0
	// (Redis 7 allows up to 2^31-1, which lets one request pin far more memory than Shoal wants).
	DefaultMaxArray = 1 << 20
	// DefaultMaxInline is Redis's PROTO_INLINE_MAX_SIZE (64 KiB).
	DefaultMaxInline = 64 << 10
	// DefaultMaxBuffered is Redis's default client-query-buffer-limit (1 GiB): room for one
	// maximal bulk plus the rest of its command.
	DefaultMaxBuffered = 1 << 30
)

// DefaultLimits returns the limits used for every zero field of a Limits.
func DefaultLimits() Limits {
	return Limits{
		MaxBulk:     DefaultMaxBulk,
		MaxArray:    DefaultMaxArray,
		MaxInline:   DefaultMaxInline,
		MaxBuffered: DefaultMaxBuffered,
	}
}

// withDefaults fills zero or negative fields from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxBulk <= 0 {
		l.MaxBulk = d.MaxBulk
	}
	if l.MaxArray <= 0 {
		l.MaxArray = d.MaxArray
	}
	if l.MaxInline <= 0 {
		l.MaxInline = d.MaxInline
	}
	if l.MaxBuffered <= 0 {
		l.MaxBuffered = d.MaxBuffered
	}
	return l
}

// ProtocolError reports input that is malformed or exceeds the [Limits]. Its Error text is the
// text Redis replies with in the same situation (Redis's own wording, including the
// "Protocol error: " prefix), so a server can send "-ERR " + Error() and then close the
// connection: after a ProtocolError the stream position is unknown and the Reader refuses to
// continue.
type ProtocolError struct {
	msg string
}

// Error returns the Redis error text, e.g. "Protocol error: invalid bulk length".
func (e *ProtocolError) Error() string { return e.msg }

// The texts below are Redis's (src/networking.c), except where noted.
func errInvalidMultibulkLen() error {
	return &ProtocolError{"Protocol error: invalid multibulk length"}
}
func errInvalidBulkLen() error   { return &ProtocolError{"Protocol error: invalid bulk length"} }
func errTooBigInline() error     { return &ProtocolError{"Protocol error: too big inline request"} }
func errTooBigMbulkCount() error { return &ProtocolError{"Protocol error: too big mbulk count string"} }
func errTooBigBulkCount() error  { return &ProtocolError{"Protocol error: too big bulk count string"} }
func errUnbalancedQuotes() error {
	return &ProtocolError{"Protocol error: unbalanced quotes in request"}
}

// errExpectedDollar builds Redis's "expected '$', got '%c'". The byte is inserted raw, as C's %c
// does (fmt's %c would UTF-8 encode bytes >= 0x80).
func errExpectedDollar(c byte) error {
	return &ProtocolError{"Protocol error: expected '$', got '" + string([]byte{c}) + "'"}
}

// errBufferLimit is Shoal's text: Redis closes a client over its query-buffer limit without a
// reply, but a reply telling the client why costs nothing.
func errBufferLimit() error { return &ProtocolError{"Protocol error: query buffer limit exceeded"} }

// Reply-side errors (ReadValue). Redis never parses replies, so these follow hiredis's spirit.
func errInvalidReplyType(c byte) error {
	return &ProtocolError{"Protocol error: invalid reply type byte '" + string([]byte{c}) + "'"}
}
func errInvalidReply(what string) error { return &ProtocolError{"Protocol error: invalid " + what} }
func errTooDeep() error                 { return &ProtocolError{"Protocol error: reply nested too deeply"} }
