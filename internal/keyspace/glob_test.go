package keyspace

import "testing"

func TestMatch(t *testing.T) {
	cases := []struct {
		pat, key string
		want     bool
	}{
		{"*", "", true},
		{"*", "anything", true},
		{"h?llo", "hello", true},
		{"h?llo", "hllo", false},
		{"h*llo", "heeeello", true},
		{"h[ae]llo", "hallo", true},
		{"h[ae]llo", "hillo", false},
		{"h[^e]llo", "hallo", true},
		{"h[^e]llo", "hello", false},
		{"h[a-b]llo", "hbllo", true},
		{"h[b-a]llo", "hbllo", true},
		{"h[a-b]llo", "hcllo", false},
		{`h\*llo`, "h*llo", true},
		{`h\*llo`, "hello", false},
		{"user:*", "user:1000", true},
		{"user:*", "usr:1", false},
		{"*:1000", "user:1000", true},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
		{"", "", true},
		{"", "a", false},
		{"abc", "abc", true},
		{"abc", "abcd", false},
	}
	for _, c := range cases {
		if got := Match([]byte(c.pat), []byte(c.key)); got != c.want {
			t.Errorf("Match(%q, %q) = %v, want %v", c.pat, c.key, got, c.want)
		}
	}
}

func FuzzMatch(f *testing.F) {
	f.Add([]byte("a*[b-c]?\\"), []byte("abcd"))
	f.Fuzz(func(t *testing.T, p, s []byte) {
		if len(p) > 64 {
			p = p[:64]
		}
		Match(p, s) // must terminate without panicking
		if !Match(p, p) && !hasMeta(p) {
			t.Fatalf("literal pattern %q does not match itself", p)
		}
	})
}

func hasMeta(p []byte) bool {
	for _, c := range p {
		switch c {
		case '*', '?', '[', '\\', ']':
			return true
		}
	}
	return false
}
