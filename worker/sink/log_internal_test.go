package sink

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzAppendJSONString: whatever the bytes, the hand-written encoder emits a JSON
// string that decodes to the input (invalid UTF-8 becoming U+FFFD).
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", `quo"te`, `back\slash`, "new\nline\ttab\r", "\x00\x1f\x7f", "é漢😀", "\xff\xfe bad", "<&>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%q encoded as invalid JSON %s: %v", s, out, err)
		}
		if want := replaceEachInvalidByte(s); got != want {
			t.Fatalf("%q round-tripped to %q, want %q", s, got, want)
		}
	})
}

// replaceEachInvalidByte replaces every byte that isn't part of valid UTF-8 with
// U+FFFD, as encoding/json does.
func replaceEachInvalidByte(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		b.WriteRune(r) // RuneError for an invalid byte, size 1
		i += size
	}
	return b.String()
}
