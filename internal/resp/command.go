package resp

import "strconv"

// AppendCommand appends args to dst encoded as a multibulk request, the form every Redis client
// sends ("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), and returns the extended slice. Building into a
// caller-owned slice lets forwarding code encode a whole pipeline into one reused buffer.
func AppendCommand(dst []byte, args ...[]byte) []byte {
	dst = append(dst, '*')
	dst = strconv.AppendInt(dst, int64(len(args)), 10)
	dst = append(dst, '\r', '\n')
	for _, a := range args {
		dst = append(dst, '$')
		dst = strconv.AppendInt(dst, int64(len(a)), 10)
		dst = append(dst, '\r', '\n')
		dst = append(dst, a...)
		dst = append(dst, '\r', '\n')
	}
	return dst
}
