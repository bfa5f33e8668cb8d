package client

import (
	"errors"
	"fmt"
	"strings"
)

// ErrNotFound is returned by [Client.Get] (and the typed helpers built on it) when the key does
// not exist. A key holding the empty value is found and returns an empty, non-nil slice, so the
// two are never confused. Calls for which absence is an ordinary outcome report it with a bool
// instead: [Client.Swap], [Client.Delete], [Client.Exists], [Client.PutIfAbsent],
// [Client.CompareAndSwap], and [Item.Found] for [Client.GetMany].
var ErrNotFound = errors.New("shoal: key not found")

// ErrClosed is returned by calls made after [Client.Close] started.
var ErrClosed = errors.New("shoal: client closed")

// ErrSessionsUnsupported is returned by [New] when [Options.Sessions] is [SessionsRequired] and
// the cluster does not implement the SHOAL.AT at-most-once session command.
var ErrSessionsUnsupported = errors.New("shoal: cluster does not support at-most-once sessions (SHOAL.AT)")

// ServerError is an error reply from a server that retrying would not change, such as
// "ERR value is not an integer or out of range". Retryable replies (MOVED, ASK, TRYAGAIN,
// CLUSTERDOWN, LOADING) are retried by the client and surface only, wrapped, when the retry
// budget or the context runs out.
type ServerError struct {
	// Code is the first word of the reply, e.g. "ERR", "WRONGPASS", "STALE".
	Code string
	// Msg is the whole reply text without the leading '-', e.g. "ERR syntax error".
	Msg string
}

// Error returns the server's text prefixed with "shoal: ".
func (e *ServerError) Error() string { return "shoal: " + e.Msg }

func newServerError(msg []byte) *ServerError {
	s := string(msg)
	code, _, _ := strings.Cut(s, " ")
	return &ServerError{Code: code, Msg: s}
}

// isUnknownCommand reports whether err is the server's "unknown command" reply.
func isUnknownCommand(err error) bool {
	var se *ServerError
	return errors.As(err, &se) && se.Code == "ERR" && strings.Contains(se.Msg, "unknown command")
}

// IsUnknownCommand reports whether err (or an error it wraps) is a server's "ERR unknown
// command" reply, which is how a server that predates a command answers it (SHOAL.CAS, for
// example).
func IsUnknownCommand(err error) bool { return isUnknownCommand(err) }

// connError reports that a request could not complete on a connection (dial, write, read or
// timeout). Whether the server executed it is unknown; the client retries it (writes carry a
// session, so a retried write executes once).
type connError struct {
	addr string
	err  error
}

func (e *connError) Error() string { return fmt.Sprintf("shoal: connection to %s: %v", e.addr, e.err) }
func (e *connError) Unwrap() error { return e.err }

// BatchError reports the keys of a bulk call ([Client.GetMany], [Client.PutMany],
// [Client.DeleteMany]) that failed. The other keys succeeded.
type BatchError struct {
	// Errs has one entry per input key, in input order: nil for a key that succeeded.
	Errs []error
	// Failed is the number of non-nil entries in Errs.
	Failed int
}

// Error summarises the failures, quoting the first.
func (e *BatchError) Error() string {
	for _, err := range e.Errs {
		if err != nil {
			return fmt.Sprintf("shoal: %d of %d keys failed; first: %v", e.Failed, len(e.Errs), err)
		}
	}
	return "shoal: batch failed"
}

// Unwrap returns the distinct per-key errors, so errors.Is and errors.As look through them.
func (e *BatchError) Unwrap() []error {
	var out []error
	for _, err := range e.Errs {
		if err != nil && !containsErr(out, err) {
			out = append(out, err)
		}
		if len(out) >= 16 {
			break
		}
	}
	return out
}

func containsErr(list []error, err error) bool {
	for _, e := range list {
		if e == err {
			return true
		}
	}
	return false
}
