package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/worker/failure"
)

// A record that failed at the sink is finished only when the broker has
// acknowledged its copy in a retry topic or the dead-letter topic; until then
// it may still come back from its partition (the copy failed, or the worker
// died with it on its way), and if the records after it in its lane (its
// partition in Partition mode, its key in Key mode) had gone to the sink in
// the meantime, it would then take effect after them. So a lane waits for its
// failed records' copies, milliseconds of a produce, not for their retries,
// and when a copy fails the lane stops for the round: its records stay
// unfinished and are read again in order after the rewind.

// copyInFlight is one failed record's copy on its way to the broker.
type copyInFlight struct {
	done chan struct{}
	ok   bool // the broker acknowledged it; read after done is closed
}

func newCopyInFlight() *copyInFlight { return &copyInFlight{done: make(chan struct{})} }

// answered records the broker's answer; the producer calls it once.
func (c *copyInFlight) answered(ok bool) {
	c.ok = ok
	close(c.done)
}

// answeredOK reports whether the broker has acknowledged the copy by now.
func (c *copyInFlight) answeredOK() bool {
	select {
	case <-c.done:
		return c.ok
	default:
		return false
	}
}

// parkedCopies are the copies one sink call parked, with the index in the
// call's chunk of each record they are of.
type parkedCopies []parkedCopyOf

type parkedCopyOf struct {
	chunkIndex int
	inFlight   *copyInFlight
}

func (p *parkedCopies) add(chunkIndex int, c *copyInFlight) {
	if c != nil {
		*p = append(*p, parkedCopyOf{chunkIndex, c})
	}
}

// wait blocks until the broker answered every copy, or until patience ran
// out, and calls failed with the chunk index of each record whose copy it
// refused or did not answer in time. The producer answers every copy within
// its delivery timeout unless it is wedged; patience bounds the wait for that
// case, after which the round ends and settle replaces the producer.
func (p parkedCopies) wait(patience time.Duration, failed func(chunkIndex int)) {
	if len(p) == 0 {
		return
	}
	timeout := time.NewTimer(patience)
	defer timeout.Stop()
	expired := false
	for _, c := range p {
		if !expired {
			select {
			case <-c.inFlight.done:
			case <-timeout.C:
				expired = true
			}
		}
		if expired || !c.inFlight.answeredOK() {
			failed(c.chunkIndex)
		}
	}
}

// allAcknowledged waits like wait and reports whether every copy was acknowledged.
func (p parkedCopies) allAcknowledged(patience time.Duration) bool {
	ok := true
	p.wait(patience, func(int) { ok = false })
	return ok
}

// refused waits like wait and returns, for a chunk of n records, which ones'
// copies were refused or not answered in time (nil: none).
func (p parkedCopies) refused(patience time.Duration, n int) []bool {
	var out []bool
	p.wait(patience, func(j int) {
		if out == nil {
			out = make([]bool, n)
		}
		out[j] = true
	})
	return out
}

// parkRetryBackoff is how long a partition waits after a failed produce to a
// retry or dead-letter topic before its records are read again.
const parkRetryBackoff = time.Second

// parkAlone parks a record that fails before it reaches the sink (it can't be
// decoded, it has no idempotency key), with a process span of its own.
func (w *Worker) parkAlone(m *message, r *kgo.Record, info failureInfo, cause error, now time.Time) {
	*m = message{rec: r, info: info}
	spans := w.startProcessSpans([]*message{m})
	kind, _ := w.park(r, info, cause, now, m.sink.Trace)
	spans.end(0, routeOutcome(kind), cause)
}

// park writes a failed record's copy to its next retry topic or to the
// dead-letter topic; the record is finished only when the broker acknowledged
// the copy (acks=all, idempotent producer). trace is the record's process span
// context (nil when tracing is off): the copy's publish span is its child. The
// returned copy says when the broker answered (nil when nothing was written: a
// share group's redelivery).
func (w *Worker) park(r *kgo.Record, info failureInfo, cause error, now time.Time, trace context.Context) (routeKind, *copyInFlight) {
	class := failure.ClassOf(cause)
	w.metrics.errors.WithLabelValues(string(class)).Inc()
	var rt route
	if w.share {
		if rt = w.shareRoute(r, cause); rt.kind == routeRedeliver {
			w.redeliver(r)
			return routeRetry, nil
		}
		info.attempt = max(info.attempt, int(r.DeliveryCount())-1) // the dead letter's attempt header counts deliveries
	} else {
		rt = decideRoute(cause, info.attempt, w.cfg.Delivery.RetryTopics, w.cfg.Delivery.DeadLetterTopic, w.backoff, now)
	}
	out := failedCopy(r, info, rt.topic, string(class), cause, now, rt.dueAt)
	out.Context = trace
	c := newCopyInFlight()
	w.producer.Load().Produce(context.WithoutCancel(context.Background()), out, func(_ *kgo.Record, err error) {
		defer c.answered(err == nil)
		if err != nil {
			w.parkFailStreak.Add(1)
			w.metrics.parkFailures.Inc()
			w.log.Error("could not park a failed record; it will be read again", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "to", rt.topic, "err", err)
			return
		}
		w.parkFailStreak.Store(0)
		if rt.kind == routeRetry {
			w.metrics.parkedForRetry(rt.level)
		} else {
			w.metrics.deadLettered.Inc()
		}
		w.accept(r)
		w.finish(r)
	})
	return rt.kind, c
}

// parkPatience is how long the worker waits for parked copies before it
// takes the producer for wedged: the delivery timeout, with room to spare.
func (w *Worker) parkPatience() time.Duration {
	return deliveryTimeout(w.cfg.Consumer.MaxPollInterval.Duration) + 5*time.Second
}

// flushParked waits until every parked copy is acknowledged or failed (their
// records are finished, or stay unfinished to be handled again), replacing the
// producer when it looks wedged.
func (w *Worker) flushParked(ctx context.Context) {
	// Parked copies normally finish (acknowledged or failed) within the delivery
	// timeout; a flush that outlasts it by far means the producer is wedged.
	flushCtx, cancel := context.WithTimeout(ctx, w.parkPatience())
	err := w.producer.Load().Flush(flushCtx)
	cancel()
	switch {
	case err != nil && ctx.Err() == nil:
		w.replaceProducer("parked records neither acknowledged nor failed past the delivery timeout")
	case err != nil:
		w.log.Warn("flush of parked records interrupted by shutdown", "err", err)
	case w.parkFailStreak.Load() >= replaceStreak:
		w.replaceProducer(fmt.Sprintf("%d parks in a row failed", w.parkFailStreak.Load()))
	}
}
