package server

import (
	"math"

	"github.com/shoal-kv/shoal/internal/group"
)

// parseInt parses b as Redis's string2ll does (group.ParseInt, which INCRBY applies to stored
// values): so "01" or " 1" are not integers for INCRBY, SELECT or COUNT either.
func parseInt(b []byte) (int64, bool) { return group.ParseInt(b) }

// parseCursor parses a SCAN cursor as Redis does with strtoul: optional sign, decimal digits,
// no leading space, no trailing garbage, no overflow. A negative cursor wraps as in C; an
// empty string is cursor 0. Redis accepts these, so clients may send them.
func parseCursor(b []byte) (uint64, bool) {
	neg := false
	i := 0
	if len(b) > 0 && (b[0] == '+' || b[0] == '-') {
		neg = b[0] == '-'
		i = 1
		if len(b) == 1 {
			// strtoul("-") consumes nothing, so eptr points at '-', which is not '\0'.
			return 0, false
		}
	}
	var v uint64
	for ; i < len(b); i++ {
		c := b[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if v > (math.MaxUint64-uint64(c-'0'))/10 {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	if neg {
		v = -v
	}
	return v, true
}

// lowerInto writes the ASCII-lowercase form of s into dst and returns it, or returns nil if s
// does not fit. Command names are matched case-insensitively through this without allocating.
func lowerInto(dst []byte, s []byte) []byte {
	if len(s) > len(dst) {
		return nil
	}
	dst = dst[:len(s)]
	for i, c := range s {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst[i] = c
	}
	return dst
}

// equalFold reports whether b equals the lowercase ASCII string lower, ignoring case in b.
func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// globMatch reports whether str matches the Redis glob pattern (as in stringmatchlen: '*',
// '?', '[...]' with '^' negation and ranges, '\' escapes). nocase folds ASCII case. CONFIG GET
// uses it; key patterns are matched by the backend.
func globMatch(pattern, str string, nocase bool) bool {
	fold := func(c byte) byte {
		if nocase && 'A' <= c && c <= 'Z' {
			return c + 'a' - 'A'
		}
		return c
	}
	p, s := 0, 0
	for p < len(pattern) {
		switch pattern[p] {
		case '*':
			for p+1 < len(pattern) && pattern[p+1] == '*' {
				p++
			}
			if p+1 == len(pattern) {
				return true
			}
			for i := s; i <= len(str); i++ {
				if globMatch(pattern[p+1:], str[i:], nocase) {
					return true
				}
			}
			return false
		case '?':
			if s >= len(str) {
				return false
			}
			s++
		case '[':
			if s >= len(str) {
				return false
			}
			p++
			not := p < len(pattern) && pattern[p] == '^'
			if not {
				p++
			}
			match := false
			for p < len(pattern) && pattern[p] != ']' {
				if pattern[p] == '\\' && p+1 < len(pattern) {
					p++
					if fold(pattern[p]) == fold(str[s]) {
						match = true
					}
				} else if p+2 < len(pattern) && pattern[p+1] == '-' {
					lo, hi := fold(pattern[p]), fold(pattern[p+2])
					if lo > hi {
						lo, hi = hi, lo
					}
					c := fold(str[s])
					if c >= lo && c <= hi {
						match = true
					}
					p += 2
				} else if fold(pattern[p]) == fold(str[s]) {
					match = true
				}
				p++
			}
			if p >= len(pattern) {
				// Unterminated class: Redis treats the end of pattern as the closing bracket.
				p = len(pattern) - 1
			}
			if not {
				match = !match
			}
			if !match {
				return false
			}
			s++
		case '\\':
			if p+1 < len(pattern) {
				p++
			}
			fallthrough
		default:
			if s >= len(str) || fold(pattern[p]) != fold(str[s]) {
				return false
			}
			s++
		}
		p++
	}
	return s == len(str)
}
