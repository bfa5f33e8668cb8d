package server

import "math"

// parseInt parses b as Redis's string2ll does: an optional '-', then digits with no leading
// zero (except "0" itself), no '+', no spaces, within int64. Redis is this strict, so "01" or
// " 1" are not integers for INCRBY, SELECT or COUNT, and Shoal must agree.
func parseInt(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	if len(b) == 1 && b[0] == '0' {
		return 0, true
	}
	neg := false
	i := 0
	if b[0] == '-' {
		neg = true
		i = 1
		if len(b) == 1 {
			return 0, false
		}
	}
	if b[i] < '1' || b[i] > '9' {
		return 0, false
	}
	if len(b)-i > 19 {
		// More than 19 digits cannot fit an int64; at most 19 cannot overflow a uint64.
		return 0, false
	}
	var v uint64
	for ; i < len(b); i++ {
		c := b[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	if neg {
		if v > uint64(math.MaxInt64)+1 {
			return 0, false
		}
		return -int64(v), true
	}
	if v > math.MaxInt64 {
		return 0, false
	}
	return int64(v), true
}

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
