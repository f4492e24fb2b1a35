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
// worker's own overhead with. A batch is formatted into one buffer and written
// with one call.
type Log struct {
	mu   sync.Mutex
	w    io.Writer
	json bool
	buf  []byte
}

// NewLog returns a log sink writing JSON lines (format "JSON") or text lines.
func NewLog(w io.Writer, format string) *Log {
	return &Log{w: w, json: format != "Text"}
}

// Write implements Sink. Lines are appended by hand: encoding/json's reflection
// cost more than the rest of the worker together (see BENCHMARKS.md).
func (l *Log) Write(_ context.Context, recs []*Record) []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buf[:0]
	for _, r := range recs {
		if l.json {
			b = appendJSONLine(b, r)
		} else {
			b = appendTextLine(b, r)
		}
	}
	l.buf = b
	if _, err := l.w.Write(b); err != nil {
		return Fill(len(recs), failure.Transient(err))
	}
	return make([]error, len(recs))
}

// appendJSONLine writes {"topic":…,"partition":…,"offset":…,"timestamp":…,
// "idempotencyKey":…,"key":…,"value":…}.
func appendJSONLine(b []byte, r *Record) []byte {
	b = append(b, `{"topic":`...)
	b = appendJSONString(b, r.Rec.Topic)
	b = append(b, `,"partition":`...)
	b = strconv.AppendInt(b, int64(r.Rec.Partition), 10)
	b = append(b, `,"offset":`...)
	b = strconv.AppendInt(b, r.Rec.Offset, 10)
	b = append(b, `,"timestamp":"`...)
	b = r.Rec.Timestamp.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","idempotencyKey":`...)
	b = appendJSONString(b, r.IdempotencyKey)
	if len(r.Rec.Key) > 0 {
		b = append(b, `,"key":`...)
		b = appendJSONString(b, r.Rec.Key)
	}
	b = append(b, `,"value":`...)
	b = appendJSONString(b, r.Rec.Value)
	return append(b, "}\n"...)
}

func appendTextLine(b []byte, r *Record) []byte {
	b = append(b, r.Rec.Topic...)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(r.Rec.Partition), 10)
	b = append(b, '/')
	b = strconv.AppendInt(b, r.Rec.Offset, 10)
	b = append(b, " key="...)
	b = append(b, r.IdempotencyKey...)
	b = append(b, " value="...)
	b = append(b, r.Rec.Value...)
	return append(b, '\n')
}

const hexDigits = "0123456789abcdef"

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
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
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

// MaxBatch implements Sink.
func (l *Log) MaxBatch() int { return 0 }

// Ping implements Sink.
func (l *Log) Ping(context.Context) error { return nil }

// Close implements Sink.
func (l *Log) Close() error { return nil }
