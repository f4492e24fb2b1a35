package worker

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluice-dev/sluice/internal/workerconfig"
	"github.com/sluice-dev/sluice/worker/failure"
	"github.com/sluice-dev/sluice/worker/sink"
)

// exactlyOnce reports whether the config asks for Kafka transactions: the
// ExactlyOnce semantics with the kafka sink (consume-transform-produce).
func (w *Worker) exactlyOnce() bool {
	return w.cfg.Delivery.Semantics == workerconfig.ExactlyOnce && w.cfg.Sink.Kafka != nil
}

// transactionalID names this member's producer: the pod name in Kubernetes,
// host and process ID outside it, so that no two live workers share one.
// It is not stable across restarts: a Deployment pod that restarts in place
// keeps its name (and fences its predecessor's producer), but a replaced pod
// gets a new one. What fences a zombie either way is the group generation
// (KIP-447): its transactional offset commit carries the generation it was
// assigned in and is refused after a rebalance, so its transaction aborts;
// the broker aborts a dead worker's open transaction after the transaction
// timeout (maxPollInterval), and until then read_committed readers of the
// partitions it wrote wait.
func (w *Worker) transactionalID() string {
	if pod := os.Getenv(workerconfig.PodNameEnv); pod != "" {
		return w.cfg.Source.ConsumerGroup + "-" + pod
	}
	host, _ := os.Hostname()
	return w.cfg.Source.ConsumerGroup + "-" + host + "-" + strconv.Itoa(os.Getpid())
}

// consumeExactlyOnce is the transactional loop: each poll's output records, its
// poison pills' dead-letter copies and its consumed offsets are committed in one
// Kafka transaction, so a read_committed reader of the sink topic sees every
// source record exactly once, whatever crashes. A failed transaction is aborted
// and the session rewinds to the last committed offsets.
func (w *Worker) consumeExactlyOnce(ctx context.Context, opts []kgo.Opt) error {
	opts = append(opts,
		kgo.TransactionalID(w.transactionalID()),
		kgo.TransactionTimeout(w.cfg.Consumer.MaxPollInterval.Duration),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.MetadataMinAge(producerMetadataMinAge),
		kgo.RecordDeliveryTimeout(deliveryTimeout(w.cfg.Consumer.MaxPollInterval.Duration)),
		kgo.ProducerLinger(time.Millisecond),
	)
	sess, err := kgo.NewGroupTransactSession(append(opts, w.opts.KafkaOpts...)...)
	if err != nil {
		return fmt.Errorf("kafka transactional session: %w", err)
	}
	// Leaving the group is bounded as in the at-least-once loop (shutdown).
	defer closeWithin(finalizeBudget, closeOnce(sess.Close))
	w.snk = sink.NewKafka(sess.Client, w.cfg.Sink.Kafka.Topic)
	w.sinkRef.Store(&w.snk)

	// Records whose output Kafka refused for what it is (too large, invalid):
	// on the next try they go to the dead-letter topic instead.
	poisoned := map[string]error{}
	maxPoll := int(w.cfg.Consumer.MaxPollRecords)
	for ctx.Err() == nil {
		fetches := sess.PollRecords(ctx, maxPoll)
		if fetches.IsClientClosed() {
			break
		}
		w.joined.Store(true)
		recs := fetches.Records()
		if len(recs) == 0 {
			continue
		}
		if err := w.limiter.wait(ctx, len(recs), w.now()); err != nil {
			break
		}
		if err := sess.Begin(); err != nil {
			return fmt.Errorf("begin transaction: %w", err)
		}
		spans, outcomes := w.startTransformSpans(recs)
		failed := w.transformInTransaction(ctx, sess, recs, poisoned, outcomes)
		how := kgo.TryCommit
		if failed != nil {
			how = kgo.TryAbort
		}
		committed, err := sess.End(context.WithoutCancel(ctx), how)
		for i := range spans {
			if committed {
				spans.end(i, outcomes[i], nil)
			} else {
				spans.end(i, outcomeDeferred, failed)
			}
		}
		if err != nil {
			// Not retryable (the transactional ID is fenced or failed): exit, and
			// let Kubernetes restart the worker with a fresh session.
			return fmt.Errorf("end transaction: %w", err)
		}
		if !committed {
			w.metrics.commits.WithLabelValues(commitResultFailed).Inc()
			if failed != nil {
				w.log.Warn("transaction aborted; the records will be read again", "err", failed)
				if !sleepCtx(ctx, parkRetryBackoff) {
					break
				}
			}
			continue
		}
		w.metrics.commits.WithLabelValues(commitResultSucceeded).Inc()
		forgetFinished(poisoned, recs)
	}
	return nil
}

// poisonKey names a source record in the poisoned set.
func poisonKey(r *kgo.Record) string {
	return r.Topic + "/" + strconv.FormatInt(int64(r.Partition), 10) + "/" + strconv.FormatInt(r.Offset, 10)
}

// forgetFinished drops the records of a committed transaction from the
// poisoned set: each of them is done (written, or dead-lettered with its
// error), so the set holds only records still to be retried and does not grow
// with every pill a long-running worker sees.
func forgetFinished(poisoned map[string]error, recs []*kgo.Record) {
	if len(poisoned) == 0 {
		return
	}
	for _, r := range recs {
		delete(poisoned, poisonKey(r))
	}
}

// startTransformSpans starts a process span per record when tracing is on
// (records' outputs and dead-letter copies get publish spans under them) and
// returns the slots for the records' outcomes.
func (w *Worker) startTransformSpans(recs []*kgo.Record) (processSpans, []string) {
	outcomes := make([]string, len(recs))
	if w.tracing == nil {
		return nil, outcomes
	}
	spans := make(processSpans, len(recs))
	for i, r := range recs {
		var span trace.Span
		r.Context, span = w.tracing.kotel.WithProcessSpan(r)
		spans[i] = span
	}
	return spans, outcomes
}

// transformInTransaction produces each record's output (or dead-letter copy)
// within the open transaction and waits for the broker's answers. It returns
// the first failure, which aborts the transaction. outcomes[i] says where
// record i went.
func (w *Worker) transformInTransaction(ctx context.Context, sess *kgo.GroupTransactSession, recs []*kgo.Record, poisoned map[string]error, outcomes []string) error {
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		now      = w.now()
	)
	var processed, deadLettered int
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	for i, r := range recs {
		id := poisonKey(r)
		info, err := decodeFailureInfo(r)
		if err == nil {
			_, err = configuredKey(w.cfg.IdempotencyKey, r)
		}
		if err == nil {
			err = poisoned[id]
		}
		var out *kgo.Record
		if err != nil {
			w.metrics.errors.WithLabelValues(string(failure.ClassPoison)).Inc()
			out = failedCopy(r, info, w.cfg.Delivery.DeadLetterTopic, string(failure.ClassPoison), err, now, time.Time{})
			deadLettered++
			outcomes[i] = outcomeDeadLettered
		} else {
			out = &kgo.Record{Topic: w.cfg.Sink.Kafka.Topic, Key: r.Key, Value: r.Value, Headers: r.Headers}
			processed++
			outcomes[i] = outcomeProcessed
		}
		if w.tracing != nil {
			// The publish span is a child of the process span, and it rewrites
			// the trace headers, so they must not be the source record's.
			out.Context, out.Headers = r.Context, slices.Clone(out.Headers)
		}
		wg.Add(1)
		sess.Produce(ctx, out, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err == nil {
				return
			}
			if failure.ClassOf(classifyOutputError(err)) == failure.ClassPoison && out.Topic != w.cfg.Delivery.DeadLetterTopic {
				mu.Lock()
				poisoned[id] = err
				mu.Unlock()
			}
			fail(err)
		})
	}
	wg.Wait()
	if firstErr == nil {
		w.metrics.processed.Add(float64(processed))
		w.metrics.deadLettered.Add(float64(deadLettered))
	}
	return firstErr
}

// classifyOutputError: Kafka refusing a record for what it is can't succeed on
// a retry; everything else may.
func classifyOutputError(err error) error {
	if sink.RecordRejected(err) {
		return failure.Poison(err)
	}
	return failure.Transient(err)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
