package server

import (
	"context"
	"errors"

	"github.com/shoal-kv/shoal/internal/group"
)

// Exact Redis 7 error texts (without the leading '-'). Clients and tests match on these
// strings, so they are copied verbatim from the Redis sources.
const (
	errSyntax          = "ERR syntax error"
	errNotInteger      = "ERR value is not an integer or out of range"
	errOverflow        = "ERR increment or decrement would overflow"
	errIntRange        = "ERR value is out of range, value must between -2147483648 and 2147483647"
	errDecrOverflow    = "ERR decrement would overflow"
	errInvalidCursor   = "ERR invalid cursor"
	errExpireNX        = "ERR NX and XX, GT or LT options at the same time are not compatible"
	errExpireGTLT      = "ERR GT and LT options at the same time are not compatible"
	errSelectCluster   = "ERR SELECT is not allowed in cluster mode"
	errMaxClients      = "ERR max number of clients reached"
	errNoProto         = "NOPROTO unsupported protocol version"
	errProtoNotInt     = "ERR Protocol version is not an integer or out of range"
	errWrongPass       = "WRONGPASS invalid username-password pair or user is disabled."
	errClientName      = "ERR Client names cannot contain spaces, newlines or special characters."
	errTryAgainPrefix  = "TRYAGAIN "
	errSlotNotServed   = "CLUSTERDOWN Hash slot not served"
	errServerShutdown  = "TRYAGAIN server is shutting down"
	errRequestTimedOut = "TRYAGAIN request timed out"
	errNoLeader        = "TRYAGAIN shard unavailable: no raft leader"
)

// invalidExpire is Redis's error for an expiry time out of range, naming the command
// (addReplyErrorExpireTime).
func invalidExpire(name string) string {
	return "ERR invalid expire time in '" + name + "' command"
}

// backendError maps an error returned by the Backend to the reply text. State-machine
// sentinels keep their Redis texts; everything else means the shard could not serve the
// request right now, and is reported as TRYAGAIN so that cluster clients retry it.
func backendError(err error) string {
	switch {
	case errors.Is(err, group.ErrNotInteger):
		return errNotInteger
	case errors.Is(err, group.ErrOverflow):
		return errOverflow
	case errors.Is(err, group.ErrTooLarge):
		return "ERR " + group.ErrTooLarge.Error()
	case errors.Is(err, group.ErrWrongGroup):
		// The configuration changed under the request; CLUSTERDOWN is Redis's own answer for
		// "slot not served" and makes clients retry (and go-redis reload its slot map).
		return errSlotNotServed
	case errors.Is(err, group.ErrMoving):
		return "TRYAGAIN slot is moving to this group"
	case errors.Is(err, group.ErrStale):
		return errStaleSeq
	case errors.Is(err, group.ErrNotLeader):
		return errNoLeader
	case errors.Is(err, context.DeadlineExceeded):
		return errRequestTimedOut
	case errors.Is(err, context.Canceled):
		return errServerShutdown
	default:
		return errTryAgainPrefix + sanitize(err.Error())
	}
}

// sanitize makes s safe inside a RESP simple string or error line: Redis replaces CR and LF
// by spaces for the same reason (rejectCommandFormat), since a newline would end the line and
// desynchronise the client.
func sanitize(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '\r' || s[i] == '\n' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] == '\r' || b[j] == '\n' {
					b[j] = ' '
				}
			}
			return string(b)
		}
	}
	return s
}
