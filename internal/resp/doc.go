// Package resp implements the wire protocol Shoal speaks to its clients: RESP2, the Redis
// serialization protocol, so that redis-cli, redis-benchmark and go-redis work unchanged.
//
// The package has three parts:
//
//   - [Reader] parses client commands ([Reader.ReadCommand]: multibulk and inline, exactly as
//     Redis accepts them) and replies ([Reader.ReadValue]). It is the hot path of the server, so
//     it reuses its buffers between commands and allocates nothing per command in the steady
//     state. Everything a peer claims (array sizes, bulk lengths, line lengths) is checked against
//     [Limits] before it is believed, and memory grows only as bytes actually arrive, so a client
//     announcing a 512 MiB value and then sending ten bytes costs almost nothing.
//   - [Writer] encodes RESP2 replies into a buffered writer, again without allocating per call.
//   - [AppendCommand] encodes a command the way a client does (for forwarding and tests).
//
// Malformed input and input beyond the limits are reported as [*ProtocolError], whose text is the
// text Redis itself replies with (for example "Protocol error: invalid multibulk length"), so the
// server can answer "-ERR " + text and close the connection, just as Redis does.
//
// The package imports nothing outside the standard library and nothing else of Shoal.
package resp
