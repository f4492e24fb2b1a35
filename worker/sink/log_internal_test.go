package sink

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"
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
		ms := nsec - nsec%1e6 // Kafka's timestamps are milliseconds
		for _, ts := range []time.Time{time.Unix(sec, nsec), time.Unix(sec, nsec), time.Unix(sec, nextNsec), time.Unix(sec+1, nsec).In(time.FixedZone("x", 3600)),
			time.Unix(sec, ms), time.Unix(sec, ms), time.Unix(sec, nsec), time.Unix(sec+1, ms), time.Unix(sec, ms)} {
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

// A key or value that is valid UTF-8 is written as a JSON string, byte for
// byte what appendJSONString writes (the format before binary values went to
// base64); anything else is written, whole, in base64 under <name>Base64.
// Either way the line stays valid JSON and the bytes can be recovered.
func FuzzLogBytesField(f *testing.F) {
	rng := rand.New(rand.NewPCG(1, 2))
	randomBytes := make([]byte, 100)
	for i := range randomBytes {
		randomBytes[i] = byte(rng.Uint32())
	}
	for _, s := range []string{
		"", "plain", "x", strings.Repeat("x", 100), `{"id":3,"customer":"José Ñúñez","note":"2nd floor\r\nback"}`,
		`quo"te`, `back\slash`, "new\nline\ttab\r", "\x00\x1f\x7f", "é漢😀", "<&>\u2028",
		"\xff", "\xff\xfe bad", "text then \xff", string(randomBytes), "\xef\xbf\xbd", // U+FFFD itself is valid
		"\xc0\x80", "\xc1\xbf", "\xe0\x9f\xbf", "\xed\xa0\x80", "\xf0\x8f\xbf\xbf", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", // overlong, surrogate, too large
		"\xe2\x82", "ab\xe2\x82", "\xf0\x9f\x98", "\x80", "é\x80", // cut short, stray continuation
		"\"012345é", "\"012345\xc3x", "\"0123456\xe6\xbc\xa2", // a character across words
		`"` + strings.Repeat("a", escapeChunk-2) + "é" + strings.Repeat("b", 10),        // a character across chunks
		`"` + strings.Repeat("é", escapeChunk), strings.Repeat("\x01", 3*escapeChunk+5), // several chunks, every byte escaped
		strings.Repeat(`"`, 2*escapeChunk+3) + "漢", strings.Repeat("a", 2*escapeChunk) + "\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, s []byte) {
		line := appendBytesField([]byte(`{"n":1`), `,"value":"`, `,"valueBase64":"`, s)
		line = append(line, '}')
		var got map[string]any
		if err := json.Unmarshal(line, &got); err != nil {
			t.Fatalf("%q: invalid JSON %s: %v", s, line, err)
		}
		if utf8.Valid(s) {
			if want := `{"n":1,"value":` + string(appendJSONString(nil, string(s))) + "}"; string(line) != want {
				t.Fatalf("%q: got %s, want %s", s, line, want)
			}
			if got["value"] != string(s) {
				t.Fatalf("%q: value %q", s, got["value"])
			}
			return
		}
		if _, ok := got["value"]; ok || len(got) != 2 {
			t.Fatalf("%q: binary value written as %s", s, line)
		}
		if dec, err := base64.StdEncoding.DecodeString(got["valueBase64"].(string)); err != nil || !bytes.Equal(dec, s) {
			t.Fatalf("%q: valueBase64 %q decodes to %q (%v)", s, got["valueBase64"], dec, err)
		}
	})
}

// The JSON line of a text record is what it was before binary values went to
// base64 (the golden lines were checked against that version); binary keys
// and values go to keyBase64 and valueBase64.
func TestLogJSONLines(t *testing.T) {
	at := time.Date(2026, 12, 2, 10, 0, 0, 123_000_000, time.UTC)
	rec := func(offset int64, key, value string, ts time.Time) *Record {
		r := &kgo.Record{Topic: "orders", Partition: 3, Offset: offset, Key: []byte(key), Value: []byte(value), Timestamp: ts}
		return &Record{Rec: r, OriginalTimestamp: ts, Origin: Origin{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}}
	}
	retried := rec(7, "k", "v", at)
	retried.Rec.Topic, retried.Rec.Offset = "orders.retry.1", 2
	configured := rec(8, "", "", at.Add(time.Millisecond))
	configured.ConfiguredKey = `id "8"`
	recs := []*Record{
		rec(9, "k9", "plain", at),
		rec(10, `k"10`, `{"a":"é\n","b":[1,2]}`+"\t\x01", at),
		rec(11, "", "", at.Add(456*time.Microsecond)),
		rec(12, "\xff\x00k", "\x00\x01\xfe\xff", at.Add(time.Second)),
		retried, configured,
		rec(99, "k", "v", time.Date(2026, 12, 2, 10, 0, 1, 0, time.UTC)),
		rec(100, "k", "v", time.Date(2026, 12, 2, 10, 0, 1, 0, time.UTC)),
		rec(101, "k", "v", time.Date(2026, 12, 2, 10, 0, 1, 0, time.UTC)),
	}
	recs[len(recs)-1].Rec.Partition, recs[len(recs)-1].Origin.Partition = 4, 4
	want := []string{
		`{"topic":"orders","partition":3,"offset":9,"timestamp":"2026-12-02T10:00:00.123Z","idempotencyKey":"orders/3/9","key":"k9","value":"plain"}`,
		`{"topic":"orders","partition":3,"offset":10,"timestamp":"2026-12-02T10:00:00.123Z","idempotencyKey":"orders/3/10","key":"k\"10","value":"{\"a\":\"é\\n\",\"b\":[1,2]}\t\u0001"}`,
		`{"topic":"orders","partition":3,"offset":11,"timestamp":"2026-12-02T10:00:00.123456Z","idempotencyKey":"orders/3/11","value":""}`,
		`{"topic":"orders","partition":3,"offset":12,"timestamp":"2026-12-02T10:00:01.123Z","idempotencyKey":"orders/3/12","keyBase64":"/wBr","valueBase64":"AAH+/w=="}`,
		`{"topic":"orders.retry.1","partition":3,"offset":2,"timestamp":"2026-12-02T10:00:00.123Z","idempotencyKey":"orders/3/7","key":"k","value":"v"}`,
		`{"topic":"orders","partition":3,"offset":8,"timestamp":"2026-12-02T10:00:00.124Z","idempotencyKey":"id \"8\"","value":""}`,
		`{"topic":"orders","partition":3,"offset":99,"timestamp":"2026-12-02T10:00:01Z","idempotencyKey":"orders/3/99","key":"k","value":"v"}`,
		`{"topic":"orders","partition":3,"offset":100,"timestamp":"2026-12-02T10:00:01Z","idempotencyKey":"orders/3/100","key":"k","value":"v"}`,
		`{"topic":"orders","partition":4,"offset":101,"timestamp":"2026-12-02T10:00:01Z","idempotencyKey":"orders/4/101","key":"k","value":"v"}`,
	}
	var out bytes.Buffer
	if errs := NewLog(&out, "JSON").Write(context.Background(), recs); errs[0] != nil {
		t.Fatal(errs)
	}
	got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(got), len(want), out.String())
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d:\ngot  %s\nwant %s", i, got[i], want[i])
		}
		var line map[string]any
		if err := json.Unmarshal([]byte(got[i]), &line); err != nil {
			t.Errorf("line %d is not JSON: %v", i, err)
		} else if line["idempotencyKey"] != recs[i].IdempotencyKey() {
			t.Errorf("line %d: idempotencyKey %q, want %q", i, line["idempotencyKey"], recs[i].IdempotencyKey())
		}
	}
}

// Offsets formatted one after the other, by carrying over the last one's
// digits, read as strconv formats them, whatever the sequence.
func FuzzLogFormatOffset(f *testing.F) {
	for _, seed := range [][2]int64{{0, 0}, {1, 5}, {8, 3}, {98, 5}, {999_998, 4}, {-3, 2}, {-1, 3}, {9_223_372_036_854_775_800, 5}} {
		f.Add(seed[0], uint8(seed[1]))
	}
	var c headCache
	f.Fuzz(func(t *testing.T, start int64, n uint8) {
		for i := range int64(n) + 1 {
			offset := start + i
			if offset < start { // overflow
				return
			}
			if got := string(c.formatOffset(offset)); got != strconv.FormatInt(offset, 10) {
				t.Fatalf("offset %d (from %d) formatted %q", offset, start, got)
			}
		}
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
