package sink

import (
	"context"
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/sluice-dev/sluice/worker/failure"
)

// Log writes one line per record to an io.Writer (the worker's stdout). It is
// the sink for trying a pipeline out, and the cheapest one to benchmark the
// worker's own overhead with. Each call formats its batch into a buffer of its
// own, so the partitions of a poll format in parallel, and writes it with one
// call under a lock, so a batch's lines stay together.
type Log struct {
	mu   sync.Mutex
	w    io.Writer
	json bool
}

// NewLog returns a log sink writing JSON lines (format "JSON") or text lines.
func NewLog(w io.Writer, format string) *Log {
	return &Log{w: w, json: format != "Text"}
}

// lineBuffer is where one call formats its lines, reused through a pool.
type lineBuffer struct {
	b  []byte
	ts timestampCache
}

var lineBuffers = sync.Pool{New: func() any { return new(lineBuffer) }}

// maxPooledLineBuffer bounds the buffers kept for reuse: an unusually large
// batch's buffer is left to the garbage collector.
const maxPooledLineBuffer = 4 << 20

// Write implements Sink. Lines are appended by hand: encoding/json's reflection
// cost more than the rest of the worker together (see BENCHMARKS.md).
func (l *Log) Write(_ context.Context, recs []*Record) []error {
	lb := lineBuffers.Get().(*lineBuffer)
	b := lb.b[:0]
	for _, r := range recs {
		if l.json {
			b = lb.ts.appendJSONLine(b, r)
		} else {
			b = appendTextLine(b, r)
		}
	}
	l.mu.Lock()
	_, err := l.w.Write(b)
	l.mu.Unlock()
	if cap(b) <= maxPooledLineBuffer {
		lb.b = b
		lineBuffers.Put(lb)
	}
	if err != nil {
		return Fill(len(recs), failure.Transient(err))
	}
	return make([]error, len(recs))
}

// appendJSONLine writes {"topic":…,"partition":…,"offset":…,"timestamp":…,
// "idempotencyKey":…,"key":…,"value":…}.
func (ts *timestampCache) appendJSONLine(b []byte, r *Record) []byte {
	b = append(b, `{"topic":`...)
	b = appendJSONString(b, r.Rec.Topic)
	b = append(b, `,"partition":`...)
	b = strconv.AppendInt(b, int64(r.Rec.Partition), 10)
	b = append(b, `,"offset":`...)
	b = strconv.AppendInt(b, r.Rec.Offset, 10)
	b = append(b, `,"timestamp":"`...)
	b = ts.appendRFC3339Nano(b, r.Rec.Timestamp)
	b = append(b, `","idempotencyKey":`...)
	if r.ConfiguredKey != "" {
		b = appendJSONString(b, r.ConfiguredKey)
	} else {
		// The default key is a topic name (letters, digits, '.', '_', '-') and
		// two numbers: nothing to escape.
		b = append(b, '"')
		b = r.AppendIdempotencyKey(b)
		b = append(b, '"')
	}
	if len(r.Rec.Key) > 0 {
		b = append(b, `,"key":`...)
		b = appendJSONString(b, r.Rec.Key)
	}
	b = append(b, `,"value":`...)
	b = appendJSONString(b, r.Rec.Value)
	return append(b, "}\n"...)
}

// timestampCache formats timestamps as time.RFC3339Nano in UTC, reusing the
// formatted date and time of day while the second doesn't change: the records
// of a batch were mostly produced within the same second, and formatting the
// whole timestamp was a tenth of the sink's cost.
type timestampCache struct {
	sec    int64
	prefix []byte // "2006-01-02T15:04:05" of sec
}

func (c *timestampCache) appendRFC3339Nano(b []byte, t time.Time) []byte {
	t = t.UTC()
	if sec := t.Unix(); sec != c.sec || c.prefix == nil {
		c.sec = sec
		c.prefix = t.Truncate(time.Second).AppendFormat(c.prefix[:0], "2006-01-02T15:04:05")
		if len(c.prefix) != len("2006-01-02T15:04:05") { // years outside 0000–9999: no caching
			c.prefix = nil
			return t.AppendFormat(b, time.RFC3339Nano)
		}
	}
	b = append(b, c.prefix...)
	if ns := t.Nanosecond(); ns != 0 {
		// ".123456789" without trailing zeros, as RFC3339Nano prints it.
		var frac [10]byte
		frac[0] = '.'
		for i := 9; i >= 1; i-- {
			frac[i] = byte('0' + ns%10)
			ns /= 10
		}
		n := 10
		for frac[n-1] == '0' {
			n--
		}
		b = append(b, frac[:n]...)
	}
	return append(b, 'Z')
}

func appendTextLine(b []byte, r *Record) []byte {
	b = append(b, r.Rec.Topic...)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(r.Rec.Partition), 10)
	b = append(b, '/')
	b = strconv.AppendInt(b, r.Rec.Offset, 10)
	b = append(b, " key="...)
	b = r.AppendIdempotencyKey(b)
	b = append(b, " value="...)
	b = append(b, r.Rec.Value...)
	return append(b, '\n')
}

const hexDigits = "0123456789abcdef"

// jsonPlain marks the bytes a JSON string holds as they are: printable ASCII
// except '"' and '\\'. One table lookup per byte is what keeps the common case
// (plain text) cheap.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// decodeRune decodes the first rune of a string or byte slice (only reached for
// non-ASCII input).
func decodeRune[T ~string | ~[]byte](s T) (rune, int) {
	if b, ok := any(s).([]byte); ok {
		return utf8.DecodeRune(b)
	}
	return utf8.DecodeRuneInString(string(s))
}

// appendJSONString appends s as a JSON string: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD (as encoding/json does).
// It takes bytes as they are, so record values are not copied into strings.
func appendJSONString[T ~string | ~[]byte](b []byte, s T) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		i += plainPrefix(s[i:])
		if i == len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := decodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// plainPrefix returns how many bytes at the start of s a JSON string holds as
// they are. It tests eight bytes at a time (SWAR: a few word operations tell
// whether any byte of a word is below 0x20, a quote, a backslash or non-ASCII),
// which makes the common case, a plain-text value, several times cheaper than
// a byte-by-byte scan.
func plainPrefix[T ~string | ~[]byte](s T) int {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		x := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		if wordNeedsEscape(x) {
			break
		}
	}
	for i < len(s) && jsonPlain[s[i]] {
		i++
	}
	return i
}

const (
	eachByte01 = 0x0101010101010101
	eachByte80 = 0x8080808080808080
)

// wordNeedsEscape reports whether any byte of x is below 0x20, '"', '\\' or
// 0x80 and above. (x - n·0x01…) &^ x & 0x80… is non-zero exactly when some
// byte of x is below n (n ≤ 0x80); a byte equal to c is a zero byte of x ^ c·0x01….
func wordNeedsEscape(x uint64) bool {
	quote, backslash := x^('"'*eachByte01), x^('\\'*eachByte01)
	return (x|
		(x-0x20*eachByte01)&^x|
		(quote-eachByte01)&^quote|
		(backslash-eachByte01)&^backslash)&eachByte80 != 0
}

// MaxBatch implements Sink.
func (l *Log) MaxBatch() int { return 0 }

// Ping implements Sink.
func (l *Log) Ping(context.Context) error { return nil }

// Close implements Sink.
func (l *Log) Close() error { return nil }
