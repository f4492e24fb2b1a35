package sink

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
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

// The cached timestamp formatting prints exactly what time.RFC3339Nano does,
// for any instant and any sequence of instants (the cache holds the last
// second).
func FuzzTimestampCacheMatchesRFC3339Nano(f *testing.F) {
	for _, seed := range [][3]int64{
		{1_764_000_000, 0, 0},                     // whole second
		{1_764_000_000, 120_000_000, 5},           // trailing zeros trimmed
		{1_764_000_000, 123_456_789, 999_999_999}, // same second, then the next
		{-1, 1, 0},              // before 1970
		{-62_135_596_800, 0, 1}, // year 1 (time.Time{})
		{253_402_300_800, 5, 0}, // year 10000: not cached
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	var c timestampCache
	f.Fuzz(func(t *testing.T, sec, nsec, nextNsec int64) {
		nsec, nextNsec = abs(nsec)%1e9, abs(nextNsec)%1e9
		for _, ts := range []time.Time{time.Unix(sec, nsec), time.Unix(sec, nextNsec), time.Unix(sec+1, nsec).In(time.FixedZone("x", 3600))} {
			got := string(c.appendRFC3339Nano([]byte("prefix "), ts))
			if want := "prefix " + ts.UTC().Format(time.RFC3339Nano); got != want {
				t.Fatalf("%v: got %q, want %q", ts, got, want)
			}
		}
	})
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}
