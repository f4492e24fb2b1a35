package sink

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strconv"
	"sync"
	"time"

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
	buf  bytes.Buffer
}

// NewLog returns a log sink writing JSON lines (format "JSON") or text lines.
func NewLog(w io.Writer, format string) *Log {
	return &Log{w: w, json: format != "Text"}
}

type logLine struct {
	Topic          string    `json:"topic"`
	Partition      int32     `json:"partition"`
	Offset         int64     `json:"offset"`
	Timestamp      time.Time `json:"timestamp"`
	IdempotencyKey string    `json:"idempotencyKey"`
	Key            string    `json:"key,omitempty"`
	Value          string    `json:"value"`
}

// Write implements Sink.
func (l *Log) Write(_ context.Context, recs []*Record) []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Reset()
	enc := json.NewEncoder(&l.buf)
	for _, r := range recs {
		if l.json {
			_ = enc.Encode(logLine{r.Rec.Topic, r.Rec.Partition, r.Rec.Offset, r.Rec.Timestamp, r.IdempotencyKey, string(r.Rec.Key), string(r.Rec.Value)})
			continue
		}
		b := l.buf.AvailableBuffer()
		b = append(b, r.Rec.Topic...)
		b = append(b, '/')
		b = strconv.AppendInt(b, int64(r.Rec.Partition), 10)
		b = append(b, '/')
		b = strconv.AppendInt(b, r.Rec.Offset, 10)
		b = append(b, " key="...)
		b = append(b, r.IdempotencyKey...)
		b = append(b, " value="...)
		b = append(b, r.Rec.Value...)
		b = append(b, '\n')
		l.buf.Write(b)
	}
	if _, err := l.w.Write(l.buf.Bytes()); err != nil {
		return fill(len(recs), failure.Transient(err))
	}
	return make([]error, len(recs))
}

// MaxBatch implements Sink.
func (l *Log) MaxBatch() int { return 0 }

// Ping implements Sink.
func (l *Log) Ping(context.Context) error { return nil }

// Close implements Sink.
func (l *Log) Close() error { return nil }
