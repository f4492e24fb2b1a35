// Package sink holds the worker's sinks, one file each. A sink delivers records
// durably and says, per record, whether it did: nil means acknowledged (the
// offset may be committed), an error classified with package failure decides
// between retry and dead-letter.
package sink

import (
	"context"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/propagation"
)

// Record is what a sink sees: the source record plus what identifies it across
// redeliveries and retries (IdempotencyKey).
type Record struct {
	// ConfiguredKey is the idempotency key taken from a header or a JSON field
	// of the value, when the pipeline configures one; empty for the default key
	// (Origin's coordinates), which is only formatted when a sink asks for it.
	ConfiguredKey string
	// Rec is the consumed record (for retried records, the retry topic's copy;
	// key, value and the original headers are unchanged).
	Rec *kgo.Record
	// OriginalTimestamp is the source record's timestamp (end-to-end latency).
	OriginalTimestamp time.Time
	// Origin locates the record in the source topic; retried copies keep it.
	// Exactly-once sinks use it to recognise copies of one record.
	Origin Origin
	// Trace is the context of the record's process span when tracing is on
	// (nil otherwise): sinks propagate it downstream.
	Trace context.Context
}

// IdempotencyKey is the key that makes a redelivery a no-op: the configured
// key, or "<topic>/<partition>/<offset>" of the record in the source topic.
// Both are stable across redeliveries and retries.
func (r *Record) IdempotencyKey() string {
	if r.ConfiguredKey != "" {
		return r.ConfiguredKey
	}
	return string(r.AppendIdempotencyKey(make([]byte, 0, len(r.Origin.Topic)+24)))
}

// AppendIdempotencyKey appends IdempotencyKey to b without building a string.
func (r *Record) AppendIdempotencyKey(b []byte) []byte {
	if r.ConfiguredKey != "" {
		return append(b, r.ConfiguredKey...)
	}
	b = append(b, r.Origin.Topic...)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(r.Origin.Partition), 10)
	b = append(b, '/')
	return strconv.AppendInt(b, r.Origin.Offset, 10)
}

// TracePropagator encodes trace context in W3C headers (traceparent,
// tracestate, baggage): in record headers, in HTTP requests.
var TracePropagator propagation.TextMapPropagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// Origin is a record's place in the source topic.
type Origin struct {
	Topic     string
	Partition int32
	Offset    int64
}

// Sink delivers records.
type Sink interface {
	// Write delivers recs (one partition's, in order) and returns one error per
	// record, nil for each the sink durably acknowledged. A sink may deliver the
	// batch at once; it must not report success for a record it did not store.
	Write(ctx context.Context, recs []*Record) []error
	// MaxBatch is the most records one Write should get (0: no limit). The
	// circuit breaker counts each Write as one call, so a sink whose calls are
	// per record (http) asks for 1.
	MaxBatch() int
	// Ping tells whether the sink answers (readiness).
	Ping(ctx context.Context) error
	// Close releases the sink's resources.
	Close() error
}

// Fill returns n copies of err (a whole batch failing the same way).
func Fill(n int, err error) []error {
	errs := make([]error, n)
	for i := range errs {
		errs[i] = err
	}
	return errs
}
