package worker

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A share group member (KIP-932) gets records of any partition from the
// broker, which locks each one to it until it is acknowledged or its lock
// expires. The loop reads:
//
//	poll (up to maxPollRecords, strictly) → handle the records, up to
//	maxInFlight at once, renewing the locks of those still waiting → wait for
//	parked copies → while some are not handled (open circuit, failed park):
//	wait, renewing, and handle those again → next poll.
//
// Every record gets its acknowledgement only when it is durably handled:
// Accept after the sink acknowledged it or after its dead-letter copy was
// acknowledged; Release (a redelivery, counted by the broker) for a transient
// failure with retries left. kgo auto-accepts whatever a poll returned that
// has no acknowledgement by the next poll, so the loop never polls while it
// holds a record: an open circuit holds the round's records (renewed), it
// does not give them back, so an outage spends no delivery counts. Only a
// shutdown releases what is left.

// shareClientOpts are the share group member's options.
func (w *Worker) shareClientOpts() ([]kgo.Opt, error) {
	opts, err := w.consumerOpts()
	if err != nil {
		return nil, err
	}
	return append(opts,
		kgo.ShareGroup(w.cfg.Source.ConsumerGroup),
		kgo.ConsumeTopics(w.cfg.Source.Topic),
		// Strict: the broker otherwise hands out whole producer batches (up to
		// thousands of records per partition), and on a topic with few
		// partitions a few members would lock everything while the rest idle.
		kgo.ShareMaxRecords(w.cfg.Consumer.MaxPollRecords),
		kgo.ShareMaxRecordsStrict(),
		kgo.ShareAckCallback(w.onShareAcks),
	), nil
}

// onShareAcks counts acknowledgements the broker refused. Such a record is
// delivered again (to this member or another): a redelivery, which the
// idempotent sink absorbs, never a loss.
func (w *Worker) onShareAcks(_ *kgo.Client, results kgo.ShareAckResults) {
	for _, r := range results {
		if r.Err != nil {
			w.metrics.shareAckFailures.Inc()
			w.log.Warn("the broker refused a share acknowledgement; the record will be delivered again", "topic", r.Topic, "partition", r.Partition, "err", r.Err)
		}
	}
}

// sharePollWait bounds a share member's wait for records.
const sharePollWait = time.Second

// consumeShare is the share group member's poll loop.
func (w *Worker) consumeShare(ctx context.Context, closeClient func() <-chan struct{}) error {
	procCtx, stopProc := w.processingContext(ctx)
	defer stopProc()

	maxPoll := int(w.cfg.Consumer.MaxPollRecords)
	for ctx.Err() == nil {
		// A bounded poll: on an idle topic it returns empty, and a poll
		// that ran its course without an error is what tells a share member
		// is in the group (kgo reports no assignment to share members).
		pollCtx, cancel := context.WithTimeout(ctx, sharePollWait)
		fetches := w.client.PollRecords(pollCtx, maxPoll)
		cancel()
		if fetches.IsClientClosed() {
			break
		}
		failed := false
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				failed = true
				w.log.Warn("share fetch error", "topic", topic, "partition", p, "err", err)
			}
		})
		if ctx.Err() == nil && !failed {
			w.joined.Store(true)
		}
		w.releaseExpired(fetches)
		parts := w.startRound(fetches)
		if len(parts) == 0 {
			continue
		}
		w.shareRound(ctx, procCtx, parts)
	}
	return w.shutdownShare(closeClient)
}

// shareRound handles one poll's records until each has its acknowledgement,
// or the worker stops and releases the rest.
func (w *Worker) shareRound(stopCtx, procCtx context.Context, parts []kgo.FetchTopicPartition) {
	stopRenewing := w.renewLocks(parts)
	defer stopRenewing()
	for {
		pauses := w.processConcurrently(stopCtx, procCtx, parts, nil)
		w.flushParked(procCtx)
		if parts = w.tracker.pending(); len(parts) == 0 || stopCtx.Err() != nil {
			break
		}
		// The circuit is open (or its trial call failed), or a park failed:
		// hold the records and handle them again when that is over.
		until := w.now().Add(parkRetryBackoff)
		for _, t := range pauses {
			if t.After(until) {
				until = t
			}
		}
		w.metrics.paused.Set(float64(len(parts)))
		sleepCtx(stopCtx, max(until.Sub(w.now()), 0))
		w.metrics.paused.Set(0)
	}
	w.releaseUnfinished()
}

// releaseExpired takes out of a poll the records whose lock ran out before
// the worker got them: kgo fetches ahead while the worker handles a round, and
// a round held through an open circuit outlasts the lock of what it fetched.
// Such a record is no longer this member's; the broker delivers it again (to
// this member or another), so handling it here would only be a duplicate.
// It is released, not left to kgo's auto-accept at the next poll: should the
// broker have handed it to this member again meanwhile, a stale accept would
// settle the new delivery before it is handled.
func (w *Worker) releaseExpired(fetches kgo.Fetches) {
	soon := w.now().Add(min(w.cfg.Source.Share.RecordLockDuration.Duration/10, time.Second))
	for i := range fetches {
		for j := range fetches[i].Topics {
			t := &fetches[i].Topics[j]
			for k := range t.Partitions {
				p := &t.Partitions[k]
				keep := p.Records[:0]
				for _, r := range p.Records {
					if d := r.AcquisitionDeadline(); !d.IsZero() && d.Before(soon) {
						r.Ack(kgo.AckRelease)
						w.metrics.shareLockExpired.Inc()
						continue
					}
					keep = append(keep, r)
				}
				p.Records = keep
			}
		}
	}
}

// releaseUnfinished gives the records this round could not handle back to the
// group (a shutdown): each is delivered again, to this member or another.
func (w *Worker) releaseUnfinished() {
	for _, p := range w.tracker.pending() {
		for _, r := range p.Records {
			r.Ack(kgo.AckRelease)
		}
	}
	w.metrics.inFlight.Sub(float64(w.tracker.forgetAll()))
}

// shareRoute decides where a failed record of a share group goes.
func (w *Worker) shareRoute(r *kgo.Record, cause error) route {
	s := w.cfg.Source.Share
	return decideShareRoute(cause, r.DeliveryCount(), s.RetryAttempts, s.DeliveryCountLimit, w.cfg.Delivery.DeadLetterTopic)
}

// redeliver releases a record that failed transiently with retries left: the
// broker counts the delivery and hands it out again, at once, to any member
// (a share group has no delayed redelivery; the circuit breaker keeps a sick
// downstream from being hammered).
func (w *Worker) redeliver(r *kgo.Record) {
	r.Ack(kgo.AckRelease)
	w.metrics.parkedForRetry(int(r.DeliveryCount()))
	w.finish(r)
}

// accept acknowledges a durably handled record to its share group.
func (w *Worker) accept(r *kgo.Record) {
	if w.share {
		r.Ack(kgo.AckAccept)
	}
}

// renewLocks extends, until stopped, the broker's lock on every record of the
// round still held (waiting behind maxInFlight, held through an open
// circuit): without it, the broker would deliver the record to another member
// while this one still handles it. A record's deadline is the one its fetch
// gave (kgo does not move it on renewal), so once a third of the lock has
// passed it is renewed every third of the lock: at least two thirds of the
// lock are always left (less kgo's flush). Renewing a record that has its acknowledgement, or
// whose last renewal is still on its way, does nothing.
func (w *Worker) renewLocks(parts []kgo.FetchTopicPartition) (stop func()) {
	lock := w.cfg.Source.Share.RecordLockDuration.Duration
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(max(lock/3, 50*time.Millisecond))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			due := time.Now().Add(lock - lock/3)
			renewed := false
			for _, p := range parts {
				for _, r := range p.Records {
					if d := r.AcquisitionDeadline(); !d.IsZero() && d.Before(due) {
						r.Ack(kgo.AckRenew)
						renewed = true
					}
				}
			}
			if renewed {
				// kgo batches acknowledgements for up to a second; a
				// renewal should not wait.
				flushCtx, cancel := context.WithTimeout(ctx, lock/3)
				_ = w.client.FlushAcks(flushCtx)
				cancel()
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// shutdownShare sends the last acknowledgements and leaves the group (kgo
// releases whatever it still holds), within finalizeBudget.
func (w *Worker) shutdownShare(closeClient func() <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), finalizeBudget)
	defer cancel()
	if err := w.client.FlushAcks(ctx); err != nil {
		w.log.Warn("shutting down: not every acknowledgement reached the broker; those records will be delivered again", "err", err)
	}
	w.log.Info("shutting down: acknowledged handled records, leaving the share group")
	select {
	case <-closeClient():
	case <-ctx.Done():
		w.log.Warn("shutting down: leaving the share group did not finish in time; exiting without it", "waited", finalizeBudget)
	}
	return nil
}
