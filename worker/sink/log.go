package sink

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"io"
	"math/bits"
	"slices"
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

// lineBuffer is where one call formats its lines, reused through a pool, with
// what the lines of a batch (one partition's records) repeat.
type lineBuffer struct {
	b    []byte
	ts   timestampCache
	head headCache
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
			b = lb.appendJSONLine(b, r)
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
// "idempotencyKey":…,"key" or "keyBase64":…,"value" or "valueBase64":…}.
func (lb *lineBuffer) appendJSONLine(b []byte, r *Record) []byte {
	head := lb.head.of(r.Rec.Topic, r.Rec.Partition)
	b = append(b, head.line...)
	offset := head.formatOffset(r.Rec.Offset)
	b = append(b, offset...)
	b = append(b, `,"timestamp":"`...)
	b = lb.ts.appendRFC3339Nano(b, r.Rec.Timestamp)
	b = append(b, `","idempotencyKey":`...)
	switch {
	case r.ConfiguredKey != "":
		b = appendJSONString(b, r.ConfiguredKey)
	case r.Origin == Origin{Topic: r.Rec.Topic, Partition: r.Rec.Partition, Offset: r.Rec.Offset}:
		// A source record's default key is "<topic>/<partition>/<offset>"
		// (AppendIdempotencyKey) of its own coordinates, already formatted.
		b = append(b, head.key...)
		b = append(b, offset...)
		b = append(b, '"')
	default:
		// The default key is a topic name (letters, digits, '.', '_', '-') and
		// two numbers: nothing to escape.
		b = append(b, '"')
		b = r.AppendIdempotencyKey(b)
		b = append(b, '"')
	}
	if len(r.Rec.Key) > 0 {
		b = appendBytesField(b, `,"key":"`, `,"keyBase64":"`, r.Rec.Key)
	}
	b = appendBytesField(b, `,"value":"`, `,"valueBase64":"`, r.Rec.Value)
	return append(b, "}\n"...)
}

// headCache holds the beginning of the lines of one partition's records, and
// of their default idempotency keys, and formats their offsets, which follow
// each other: formatting the topic, the partition and the offset twice per
// line was 40% of a plain-text line's cost.
type headCache struct {
	topic     string
	partition int32
	line      []byte // {"topic":"<topic>","partition":<partition>,"offset":
	key       []byte // "<topic>/<partition>/
	offset    int64
	digits    []byte // offset in decimal
}

// formatOffset returns offset in decimal (valid until the next call). The
// offset after the last one is the last one's digits plus one: a carry over
// the last digits instead of a division per digit.
func (c *headCache) formatOffset(offset int64) []byte {
	if offset == c.offset+1 && len(c.digits) > 0 && offset > 0 {
		c.offset = offset
		for i := len(c.digits) - 1; i >= 0; i-- {
			if c.digits[i] != '9' {
				c.digits[i]++
				return c.digits
			}
			c.digits[i] = '0'
		}
		c.digits = append(c.digits[:1], c.digits...) // 99…9 + 1: a digit more
		c.digits[0] = '1'
		return c.digits
	}
	c.offset = offset
	c.digits = strconv.AppendInt(c.digits[:0], offset, 10)
	return c.digits
}

func (c *headCache) of(topic string, partition int32) *headCache {
	if c.line != nil && topic == c.topic && partition == c.partition {
		return c
	}
	c.topic, c.partition = topic, partition
	c.line = append(c.line[:0], `{"topic":`...)
	c.line = appendJSONString(c.line, topic)
	c.line = append(c.line, `,"partition":`...)
	c.line = strconv.AppendInt(c.line, int64(partition), 10)
	c.line = append(c.line, `,"offset":`...)
	c.key = append(c.key[:0], '"')
	c.key = append(c.key, topic...)
	c.key = append(c.key, '/')
	c.key = strconv.AppendInt(c.key, int64(partition), 10)
	c.key = append(c.key, '/')
	return c
}

// timestampCache formats timestamps as time.RFC3339Nano in UTC, reusing the
// formatted date and time of day while the second doesn't change, and the
// whole timestamp while it doesn't change: the records of a batch were mostly
// produced within the same second, often within the same millisecond (Kafka's
// timestamps are milliseconds), and formatting the whole timestamp was a tenth
// of the sink's cost.
type timestampCache struct {
	sec    int64
	prefix []byte // "2006-01-02T15:04:05" of sec
	ns     int    // the last timestamp's nanoseconds (its second is sec)
	last   []byte // the last timestamp formatted; nil: none
}

func (c *timestampCache) appendRFC3339Nano(b []byte, t time.Time) []byte {
	t = t.UTC()
	sec, ns := t.Unix(), t.Nanosecond()
	if c.last != nil && sec == c.sec && ns == c.ns {
		return append(b, c.last...)
	}
	if sec != c.sec || c.prefix == nil {
		c.sec = sec
		c.prefix = t.Truncate(time.Second).AppendFormat(c.prefix[:0], "2006-01-02T15:04:05")
		if len(c.prefix) != len("2006-01-02T15:04:05") { // years outside 0000–9999: no caching
			c.prefix, c.last = nil, nil
			return t.AppendFormat(b, time.RFC3339Nano)
		}
	}
	start := len(b)
	b = appendFraction(append(b, c.prefix...), ns)
	c.ns, c.last = ns, append(c.last[:0], b[start:]...)
	return b
}

// appendFraction appends ns as RFC3339Nano's fraction of a second (nothing for
// 0, ".1" to ".123456789" without trailing zeros) and the zone, Z.
func appendFraction(b []byte, ns int) []byte {
	if ns%1e6 == 0 && ns != 0 {
		// Kafka timestamps are milliseconds: ".123" without trailing zeros.
		ms := ns / 1e6
		frac := [4]byte{'.', byte('0' + ms/100), byte('0' + ms/10%10), byte('0' + ms%10)}
		n := 4
		for frac[n-1] == '0' {
			n--
		}
		return append(append(b, frac[:n]...), 'Z')
	}
	if ns != 0 {
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
// except '"' and '\\' (for the bytes the word-at-a-time scans leave).
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendJSONString appends s as a JSON string: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD (as encoding/json does).
// It is for the line's strings (topic, configured idempotency key); record keys
// and values go through appendBytesField.
func appendJSONString(b []byte, s string) []byte {
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
			b = appendEscape(b, c)
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
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

// appendEscape appends the JSON escape of an ASCII byte that a JSON string
// can't hold as it is (a control character, '"' or '\\').
func appendEscape(b []byte, c byte) []byte {
	switch c {
	case '"', '\\':
		return append(b, '\\', c)
	case '\n':
		return append(b, '\\', 'n')
	case '\r':
		return append(b, '\\', 'r')
	case '\t':
		return append(b, '\\', 't')
	}
	return append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
}

// plainPrefix returns how many bytes at the start of s a JSON string holds as
// they are. It tests eight bytes at a time (SWAR: a few word operations tell
// whether any byte of a word is below 0x20, a quote, a backslash or non-ASCII),
// which makes the common case, a plain-text value, several times cheaper than
// a byte-by-byte scan.
func plainPrefix(s string) int {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		x := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		if escapeOrNonASCII(x) != 0 {
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

// escapeOrNonASCII is non-zero when any byte of x is below 0x20, '"', '\\' or
// 0x80 and above (its bits above the lowest one may be wrong: a borrow).
// (x - n·0x01…) &^ x & 0x80… is non-zero exactly when some byte of x is below
// n (n ≤ 0x80); a byte equal to c is a zero byte of x ^ c·0x01….
func escapeOrNonASCII(x uint64) uint64 {
	quote, backslash := x^('"'*eachByte01), x^('\\'*eachByte01)
	return (x |
		(x-0x20*eachByte01)&^x |
		(quote-eachByte01)&^quote |
		(backslash-eachByte01)&^backslash) & eachByte80
}

// escapeBytes returns a word with the 0x80 bit set in each byte of x that a
// JSON string can't hold as it is (below 0x20, '"' or '\\'), and no other.
// Unlike escapeOrNonASCII's, its tests are exact per byte (no borrow crosses a
// byte), so the bits locate every such byte: with y a byte's low seven bits,
// y + 0x60 reaches 0x80 unless y < 0x20, and y + 0x7f reaches 0x80 unless y is
// zero; or-ing the byte itself in leaves bytes from 0x80 out.
func escapeBytes(x uint64) uint64 {
	const low7 = 0x7f7f7f7f7f7f7f7f
	quote, backslash := x^('"'*eachByte01), x^('\\'*eachByte01)
	control := (x&low7 + (0x80-0x20)*eachByte01) | x
	isQuote := (quote&low7 + low7) | quote
	isBackslash := (backslash&low7 + low7) | backslash
	return ^(control & isQuote & isBackslash) & eachByte80
}

// appendBytesField appends a record key or value: `,"<name>":"<s>"` with s as
// a JSON string when s is valid UTF-8 (byte for byte what appendJSONString
// writes, as the sink always did for text), or `,"<name>Base64":"<s in
// standard base64>"` when it isn't (binary: Avro, Protobuf, compressed or
// encrypted data). Escaping binary values byte by byte cost ten times the rest
// of the line (half the bytes became a six-byte \ufffd, an eighth \u00XX)
// and lost the bytes; base64 keeps them and costs a tenth of that.
//
// text and base64 are the field openings, `,"value":"` and `,"valueBase64":"`.
func appendBytesField(b []byte, text, base64Field string, s []byte) []byte {
	mark := len(b)
	b = append(b, text...)
	n := asciiPlainPrefix(s)
	b = append(b, s[:n]...) // plain ASCII text, the common case, is all of s
	if n < len(s) {
		var ok bool
		if b, ok = appendEscaped(b, s[n:]); !ok {
			b = append(b[:mark], base64Field...)
			b = base64.StdEncoding.AppendEncode(b, s)
		}
	}
	return append(b, '"')
}

// asciiPlainPrefix returns how many bytes at the start of s are printable
// ASCII other than '"' and '\\': sixteen bytes at a time, then one word for the
// last bytes (overlapping the ones before, or padded for a short key), so that
// plain text takes no byte-by-byte loop.
func asciiPlainPrefix(s []byte) int {
	i := 0
	for ; i+16 <= len(s); i += 16 {
		if escapeOrNonASCII(binary.LittleEndian.Uint64(s[i:]))|escapeOrNonASCII(binary.LittleEndian.Uint64(s[i+8:])) != 0 {
			return i + plainBytes(s[i:])
		}
	}
	if i == len(s) {
		return i
	}
	var last uint64
	if len(s) >= 8 {
		last = binary.LittleEndian.Uint64(s[len(s)-8:])
	} else {
		word := [8]byte{' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '}
		copy(word[:], s)
		last = binary.LittleEndian.Uint64(word[:])
	}
	if escapeOrNonASCII(last) == 0 {
		return len(s)
	}
	return i + plainBytes(s[i:])
}

// plainBytes returns how many bytes at the start of s are printable ASCII
// other than '"' and '\\', one at a time.
func plainBytes(s []byte) int {
	i := 0
	for i < len(s) && jsonPlain[s[i]] {
		i++
	}
	return i
}

// runeLen returns the length of the UTF-8 encoding at the start of s, whose
// first byte is 0x80 or above, or 0 if it is not valid UTF-8 (a continuation
// byte first, an overlong form, a surrogate, above U+10FFFF, or cut short).
func runeLen(s []byte) int {
	cont := func(i int, lo, hi byte) bool { return i < len(s) && lo <= s[i] && s[i] <= hi }
	switch c := s[0]; {
	case c < 0xc2:
		return 0
	case c < 0xe0:
		if cont(1, 0x80, 0xbf) {
			return 2
		}
	case c < 0xf0:
		lo, hi := byte(0x80), byte(0xbf)
		switch c {
		case 0xe0:
			lo = 0xa0 // overlong below
		case 0xed:
			hi = 0x9f // surrogates above
		}
		if cont(1, lo, hi) && cont(2, 0x80, 0xbf) {
			return 3
		}
	case c < 0xf5:
		lo, hi := byte(0x80), byte(0xbf)
		switch c {
		case 0xf0:
			lo = 0x90 // overlong below
		case 0xf4:
			hi = 0x8f // above U+10FFFF
		}
		if cont(1, lo, hi) && cont(2, 0x80, 0xbf) && cont(3, 0x80, 0xbf) {
			return 4
		}
	}
	return 0
}

// escapeChunk is how much of a key or value appendEscaped escapes at a time:
// it reserves room for the worst case (every byte a six-byte \u00XX) of one
// chunk, not of the whole value.
const escapeChunk = 1024

// jsonEscape is, for each byte in a JSON string, the first two bytes of what
// the string holds for it and how many there are: the byte itself (1), a
// backslash escape (2), or \u00XX (6, the last four written apart).
var jsonEscape = func() (t [256][3]byte) {
	for c := range t {
		t[c] = [3]byte{byte(c), 0, 1}
		if c < 0x20 {
			t[c] = [3]byte{'\\', 'u', 6}
		}
	}
	for c, e := range map[byte]byte{'"': '"', '\\': '\\', '\n': 'n', '\r': 'r', '\t': 't'} {
		t[c] = [3]byte{'\\', e, 2}
	}
	return t
}()

// appendEscaped appends s as the inside of a JSON string, or reports false
// when s is not valid UTF-8 (b then holds part of the encoding). Eight bytes
// at a time: a word is stored as it is, and for each byte in it to escape
// (found with escapeBytes; in a JSON document most words hold a quote) the
// output goes back to that byte, writes its escape and stores the rest of the
// word after it, so the work is per escape, not per byte. Non-ASCII bytes are
// copied like plain ones once the characters they begin are checked (runeLen;
// a separate utf8.Valid pass cost a quarter of escaping a JSON document, as it
// goes byte by byte from the first non-ASCII byte on).
func appendEscaped(b, s []byte) ([]byte, bool) {
	checked := 0 // s[:checked] is valid UTF-8
	for pos := 0; pos < len(s); pos += escapeChunk {
		src := s[pos:min(len(s), pos+escapeChunk)]
		b = slices.Grow(b, 6*len(src)+8)
		dst := b[len(b):cap(b)]
		j := 0
		for k := 0; k < len(src); k += 8 {
			var x uint64
			n := len(src) - k
			if n >= 8 {
				n, x = 8, binary.LittleEndian.Uint64(src[k:])
			} else {
				// The last bytes, padded with spaces (nothing to escape).
				word := [8]byte{' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '}
				copy(word[:], src[k:])
				x = binary.LittleEndian.Uint64(word[:])
			}
			if hi := x & eachByte80; hi != 0 && checked < pos+k+n {
				// Check each character that begins at a non-ASCII byte of
				// the word (not in one checked already) and may end beyond.
				for base := pos + k; ; {
					if skip := checked - base; skip > 0 {
						hi &= ^uint64(0) << (8 * skip)
					}
					if hi == 0 {
						break
					}
					i := base + bits.TrailingZeros64(hi)>>3
					size := runeLen(s[i:])
					if size == 0 {
						return b, false
					}
					checked = i + size
				}
			}
			done := 0 // bytes of the word written
			for m := escapeBytes(x); m != 0; m &= m - 1 {
				i := bits.TrailingZeros64(m) >> 3
				binary.LittleEndian.PutUint64(dst[j:], x>>(8*done))
				j += i - done
				c := byte(x >> (8 * i))
				e := &jsonEscape[c]
				dst[j], dst[j+1] = e[0], e[1]
				if e[2] == 6 {
					dst[j+2], dst[j+3], dst[j+4], dst[j+5] = '0', '0', hexDigits[c>>4], hexDigits[c&0xf]
				}
				j += int(e[2])
				done = i + 1
			}
			binary.LittleEndian.PutUint64(dst[j:], x>>(8*done))
			j += n - done
		}
		b = b[:len(b)+j]
	}
	return b, true
}

// MaxBatch implements Sink.
func (l *Log) MaxBatch() int { return 0 }

// Ping implements Sink.
func (l *Log) Ping(context.Context) error { return nil }

// Close implements Sink.
func (l *Log) Close() error { return nil }
