package sink

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/worker/failure"
)

// Kafka produces each record (key, value, headers) to a topic with the worker's
// idempotent, acks=all producer, and acknowledges a record only when the broker
// did. (ExactlyOnce delivery uses the transactional loop instead.)
type Kafka struct {
	client func() *kgo.Client // the worker's current producer
	topic  string
}

// NewKafka returns a Kafka sink that produces with the client producer returns
// (the worker may replace a wedged producer).
func NewKafka(producer func() *kgo.Client, topic string) *Kafka {
	return &Kafka{client: producer, topic: topic}
}

// Write implements Sink: the batch is produced at once and awaited until ctx
// ends; records not acknowledged by then are reported as transient failures
// (a late acknowledgement only means a harmless duplicate later).
func (k *Kafka) Write(ctx context.Context, recs []*Record) []error {
	var mu sync.Mutex
	errs := make([]error, len(recs))
	answered := make([]bool, len(recs))
	pending := len(recs)
	allDone := make(chan struct{})
	for i, r := range recs {
		out := &kgo.Record{Topic: k.topic, Key: r.Rec.Key, Value: r.Rec.Value, Headers: r.Rec.Headers}
		if r.Trace != nil {
			// Tracing: the publish span is a child of the process span, and it
			// rewrites the trace headers, so they must not be the source's.
			out.Context, out.Headers = r.Trace, slices.Clone(r.Rec.Headers)
		}
		k.client().Produce(ctx, out, func(_ *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			errs[i], answered[i] = classifyProduceError(err), true
			if pending--; pending == 0 {
				close(allDone)
			}
		})
	}
	select {
	case <-allDone:
	case <-ctx.Done():
	}
	mu.Lock()
	defer mu.Unlock()
	out := make([]error, len(recs))
	for i := range out {
		if out[i] = errs[i]; !answered[i] {
			out[i] = failure.Transientf("not acknowledged in time: %w", ctx.Err())
		}
	}
	return out
}

// classifyProduceError: a record too large or otherwise rejected for what it is
// will never be accepted; everything else (not enough replicas, leader moves,
// timeouts) may be.
func classifyProduceError(err error) error {
	if err == nil {
		return nil
	}
	if RecordRejected(err) {
		return failure.Poison(err)
	}
	return failure.Transient(err)
}

// RecordRejected reports whether Kafka refused a record for what it is (too
// large, invalid): producing it again can't succeed.
func RecordRejected(err error) bool {
	return errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) ||
		errors.Is(err, kerr.InvalidRecord)
}

// MaxBatch implements Sink.
func (k *Kafka) MaxBatch() int { return 0 }

// Ping implements Sink.
func (k *Kafka) Ping(ctx context.Context) error { return k.client().Ping(ctx) }

// Close implements Sink; the client belongs to the worker.
func (k *Kafka) Close() error { return nil }
