package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/internal/workerconfig"
	"github.com/sluice-dev/sluice/worker/failure"
	"github.com/sluice-dev/sluice/worker/sink"
)

// ExactlyOnce with the postgres sink: the consumed offsets live in the sink's
// database and move in the transactions that write the rows, so the database,
// not Kafka, says where a partition resumes. The poll loop, retry topics,
// breaker and rate limit are the at-least-once ones; what changes is:
//
//   - a partition's records are handled strictly in order: a chunk is applied
//     (rows + offset, fenced by the stored offset), and a failed record is
//     parked and acknowledged, with the offset stored past it, before the next
//     chunk starts. So the stored offset always sits exactly after the last
//     handled record, and nothing after it has taken effect;
//   - newly assigned partitions start at the stored offsets (AdjustFetchOffsetsFn);
//     a partition with none gets one first (its Kafka commit, or startFrom made
//     absolute), so every write is fenced by a stored offset;
//   - the stored offset is the truth: a chunk is written only when it starts
//     exactly there. A database that lost commits it had acknowledged (a crash
//     with synchronous_commit off, a failover to an asynchronous standby) holds
//     an older offset than the worker's position: the write is refused and the
//     partition goes back to the stored offset, so the lost records are written
//     again instead of leaving a gap;
//   - the Kafka commit follows the database, best-effort, so lag stays visible.

// offsetsInDB reports whether the consumer's offsets live in the sink's
// database: ExactlyOnce delivery with the postgres sink.
func (w *Worker) offsetsInDB() bool {
	return w.cfg.Delivery.Semantics == workerconfig.ExactlyOnce && w.cfg.Sink.Postgres != nil
}

// offsetsFromDB replaces the fetched Kafka commits of newly assigned partitions
// with the offsets stored in the database; a partition without a stored offset
// gets its Kafka commit (or startFrom, made absolute) stored first. While the
// database doesn't answer, the partitions wait (heartbeats go on); a rebalance
// cancels ctx.
func (w *Worker) offsetsFromDB(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	for attempt := 1; ; attempt++ {
		stored, err := w.initStoredOffsets(ctx, offsets)
		if err == nil {
			for topic, ps := range stored {
				for p, next := range ps {
					if offsets[topic][p].EpochOffset().Offset != next {
						// Kafka's commit lags (or leads) the database: the poll
						// loop commits the stored offset, so that an idle
						// partition doesn't show lag that isn't there.
						w.tracker.resumeAt(tp{topic, p}, next)
					}
					offsets[topic][p] = kgo.NewOffset().At(next)
					w.rememberDBStart(tp{topic, p}, next)
				}
			}
			w.log.Info("resuming assigned partitions at the offsets stored in PostgreSQL", "stored", stored)
			return offsets, nil
		}
		w.log.Warn("could not read the stored offsets; the assigned partitions wait", "attempt", attempt, "err", err)
		if !sleepCtx(ctx, min(time.Duration(attempt)*500*time.Millisecond, 5*time.Second)) {
			return nil, fmt.Errorf("read the offsets stored in PostgreSQL: %w", err)
		}
	}
}

// initStoredOffsets returns the stored offsets of the assigned partitions,
// storing one first for each partition that has none: where the consumer
// would start, its Kafka commit or the start policy's offset, read from the
// brokers when kgo holds it as "the start" or "the end".
func (w *Worker) initStoredOffsets(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]int64, error) {
	group := w.cfg.Source.ConsumerGroup
	parts := map[string][]int32{}
	for topic, ps := range offsets {
		for p := range ps {
			parts[topic] = append(parts[topic], p)
		}
	}
	stored, err := w.txSink.Offsets(ctx, group, parts)
	if err != nil {
		return nil, err
	}
	starts := map[string]map[int32]int64{}
	var relative []string
	for topic, ps := range offsets {
		for p, o := range ps {
			if _, ok := stored[topic][p]; ok {
				continue
			}
			if starts[topic] == nil {
				starts[topic] = map[int32]int64{}
			}
			at := o.EpochOffset().Offset
			if at < 0 && !slices.Contains(relative, topic) {
				relative = append(relative, topic)
			}
			starts[topic][p] = at
		}
	}
	if len(starts) == 0 {
		return stored, nil
	}
	if len(relative) > 0 {
		select {
		case <-w.clientSet:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		adm := kadm.NewClient(w.client)
		list := adm.ListStartOffsets
		if w.cfg.Source.StartFrom == workerconfig.StartFromLatest {
			list = adm.ListEndOffsets
		}
		listed, err := list(ctx, relative...)
		if err == nil {
			err = listed.Error()
		}
		if err != nil {
			return nil, fmt.Errorf("resolve the start offsets of %v: %w", relative, err)
		}
		for topic, ps := range starts {
			for p, at := range ps {
				if at >= 0 {
					continue
				}
				o, ok := listed.Lookup(topic, p)
				if !ok {
					return nil, fmt.Errorf("resolve the start offset of %s[%d]: not listed", topic, p)
				}
				ps[p] = o.Offset
			}
		}
	}
	return w.txSink.InitOffsets(ctx, group, starts)
}

// rememberDBStart notes where a partition resumed in the database: if the
// database later loses even that stored offset, the partition goes back there.
func (w *Worker) rememberDBStart(p tp, next int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.dbStart[p] = next
}

// processPartitionTx is processPartition for offsets in the database: it
// alternates between applying a run of deliverable records and parking a run
// of failed ones, and stops at the first thing it can't finish (a retry not
// yet due, backpressure, a failed park, a fence); settle rewinds to there.
func (w *Worker) processPartitionTx(stopCtx, procCtx context.Context, recs []*kgo.Record) time.Time {
	maxBatch := w.snk.MaxBatch()
	mem := getBatchMemory(len(recs))
	defer mem.release()
	msgs, chunk := mem.msgs, mem.chunk
	retryAttempts := w.attempts[recs[0].Topic] // one partition: one topic
	for i := 0; i < len(recs); {
		if stopCtx.Err() != nil {
			return time.Time{}
		}
		now := w.now()
		chunk = chunk[:0]
		var bad error
		var dueAt time.Time
		for j := i; j < len(recs) && (maxBatch == 0 || len(chunk) < maxBatch); j++ {
			r := recs[j]
			info, err := failureInfoOf(r, retryAttempts)
			if err == nil && info.dueAt.After(now) {
				dueAt = info.dueAt
				break
			}
			var key string
			if err == nil {
				key, err = configuredKey(w.cfg.IdempotencyKey, r)
			}
			msgs[j] = newMessage(r, info, key)
			if err != nil {
				bad = err
				break
			}
			chunk = append(chunk, &msgs[j])
		}
		if len(chunk) > 0 {
			n, until, ok := w.deliverTx(procCtx, chunk)
			i += n
			if !ok {
				return until
			}
			continue
		}
		if bad != nil {
			alone := []*message{&msgs[i]}
			if !w.parkTx(procCtx, alone, []error{bad}, w.startProcessSpans(alone)) {
				return time.Time{}
			}
			i++
			continue
		}
		return dueAt // the head of this retry partition isn't due yet
	}
	return time.Time{}
}

// deliverTx applies one chunk through rate limit and breaker and parks its
// failed records. It returns how many records of the chunk are finished, and
// false (with a pause time, or zero for settle's default) when the partition
// can't go on now.
func (w *Worker) deliverTx(ctx context.Context, chunk []*message) (int, time.Time, bool) {
	call, until, ok := w.admit(ctx, len(chunk))
	if !ok {
		return 0, until, false
	}
	spans := w.startProcessSpans(chunk)
	defer spans.endAll(outcomeDeferred, nil) // the records after a failed run: read again
	recs := make([]*sink.Record, len(chunk))
	for i, m := range chunk {
		recs[i] = &m.sink
	}
	start := w.now()
	res := w.apply(ctx, recs)
	w.metrics.processing.Observe(w.now().Sub(start).Seconds())

	var fenced *sink.FencedError
	transient := 0
	if res.Err != nil && !errors.As(res.Err, &fenced) && failure.ClassOf(res.Err) == failure.ClassTransient {
		transient = res.Failed
	}
	if until, failed := w.failedProbe(call, transient, len(chunk)); failed {
		spans.endAll(outcomeDeferred, errSinkFailing)
		return 0, until, false
	}
	call.done(transient, len(chunk))

	applied := make([]*kgo.Record, res.Applied)
	now := w.now()
	for i, m := range chunk[:res.Applied] {
		applied[i] = m.rec
		if !m.info.origin.timestamp.IsZero() {
			w.metrics.endToEnd.Observe(now.Sub(m.info.origin.timestamp).Seconds())
		}
		spans.end(i, outcomeProcessed, nil)
	}
	w.metrics.processed.Add(float64(res.Applied - res.Duplicates))
	w.metrics.duplicates.Add(float64(res.Duplicates))
	w.metrics.inFlight.Sub(float64(w.tracker.doneAll(applied)))
	switch {
	case fenced != nil:
		spans.endAll(outcomeFenced, nil)
		w.fence(fenced)
		return res.Applied, time.Time{}, false
	case res.Err == nil:
		return res.Applied, time.Time{}, true
	}
	failed := chunk[res.Applied : res.Applied+res.Failed]
	errs := make([]error, len(failed))
	for i := range errs {
		errs[i] = res.Err
	}
	if !w.parkTx(ctx, failed, errs, spans.sub(res.Applied, res.Applied+res.Failed)) {
		return res.Applied, time.Time{}, false
	}
	return res.Applied + res.Failed, time.Time{}, true
}

// apply calls the sink with the processing timeout; a panic is a poison pill
// (isolated by applying the records one by one).
func (w *Worker) apply(ctx context.Context, recs []*sink.Record) (res sink.ApplyResult) {
	callCtx, cancel := context.WithTimeout(ctx, w.cfg.Delivery.ProcessingTimeout.Duration)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			if len(recs) == 1 {
				res = sink.ApplyResult{Failed: 1, Err: failure.Poisonf("sink panicked: %v", p)}
				return
			}
			res = sink.ApplyResult{}
			for i := range recs {
				r := w.apply(ctx, recs[i:i+1])
				res.Applied += r.Applied
				res.Duplicates += r.Duplicates
				if r.Err != nil {
					res.Failed, res.Err = r.Failed, r.Err
					return
				}
			}
		}
	}()
	res = w.txSink.Apply(callCtx, w.cfg.Source.ConsumerGroup, recs)
	// A sink that breaks the contract must not break the partition's order.
	switch n := len(recs); {
	case res.Applied < 0 || res.Applied > n:
		res = sink.ApplyResult{Failed: n, Err: failure.Transientf("sink reported %d of %d records applied", res.Applied, n)}
	case res.Err == nil && res.Applied < n:
		res.Failed, res.Err = n-res.Applied, failure.Transientf("sink applied %d of %d records without an error", res.Applied, n)
	case res.Err != nil && (res.Failed < 1 || res.Applied+res.Failed > n):
		res.Failed = n - res.Applied
	}
	return res
}

// parkTx parks failed records (consecutive, of one partition) and stores the
// offset past them once Kafka acknowledged their copies: first the database
// marks the origins of copies bound for retry topics (fenced like a write), so
// that however many copies a crash makes, one is written; then the copies are
// produced and awaited; then the offset moves. It reports whether all of them
// are finished; if not, the partition is rewound to the first unfinished one.
// It ends the records' process spans.
func (w *Worker) parkTx(ctx context.Context, msgs []*message, errs []error, spans processSpans) bool {
	defer spans.endAll(outcomeDeferred, nil) // not finished: read again
	now := w.now()
	routes := make([]route, len(msgs))
	retry := make([]bool, len(msgs))
	recs := make([]*sink.Record, len(msgs))
	for i, m := range msgs {
		w.metrics.errors.WithLabelValues(string(failure.ClassOf(errs[i]))).Inc()
		routes[i] = decideRoute(errs[i], m.info.attempt, w.cfg.Delivery.RetryTopics, w.cfg.Delivery.DeadLetterTopic, w.backoff, now)
		retry[i] = routes[i].kind == routeRetry
		recs[i] = &m.sink
	}
	first := msgs[0].rec
	group := w.cfg.Source.ConsumerGroup
	timeout := deliveryTimeout(w.cfg.Consumer.MaxPollInterval.Duration)

	prepCtx, cancel := context.WithTimeout(ctx, timeout)
	done, err := w.txSink.PrepareParks(prepCtx, group, recs, retry)
	cancel()
	var fenced *sink.FencedError
	if errors.As(err, &fenced) {
		w.fence(fenced)
		return false
	}
	if err != nil {
		w.metrics.parkFailures.Inc()
		w.log.Error("could not prepare parking failed records in PostgreSQL; they will be read again", "topic", first.Topic, "partition", first.Partition, "offset", first.Offset, "err", err)
		return false
	}

	type ack struct {
		i   int
		err error
	}
	acks := make(chan ack, len(msgs))
	producer, pending := w.producer.Load(), 0
	for i, m := range msgs {
		if done[i] {
			continue // a copy of this record was already written or dead-lettered
		}
		pending++
		out := failedCopy(m.rec, m.info, routes[i].topic, string(failure.ClassOf(errs[i])), errs[i], now, routes[i].dueAt)
		out.Context = m.sink.Trace
		producer.Produce(context.WithoutCancel(ctx), out, func(_ *kgo.Record, err error) { acks <- ack{i, err} })
	}
	acked := make([]bool, len(msgs))
	copy(acked, done)
	timer := time.NewTimer(timeout + 5*time.Second)
	defer timer.Stop()
	var produceErr error
wait:
	for ; pending > 0; pending-- {
		select {
		case a := <-acks:
			if a.err != nil {
				produceErr = a.err
				continue
			}
			acked[a.i] = true
		case <-timer.C:
			produceErr = errors.New("parked copies neither acknowledged nor failed in time")
			break wait
		}
	}
	n := 0 // the acknowledged prefix
	for n < len(msgs) && acked[n] {
		n++
	}
	if n > 0 {
		var deadLettered []sink.Origin
		for i := range n {
			if !done[i] && routes[i].kind == routeDeadLetter {
				deadLettered = append(deadLettered, recs[i].Origin)
			}
		}
		advCtx, cancel := context.WithTimeout(ctx, timeout)
		err := w.advance(advCtx, group, first.Topic, first.Partition, first.Offset, msgs[n-1].rec.Offset+1, deadLettered)
		cancel()
		if errors.As(err, &fenced) {
			w.fence(fenced)
			return false
		}
		if err != nil {
			// The copies exist; read again, the records are parked again and
			// the retry markers keep the extra copies from being written.
			w.metrics.parkFailures.Inc()
			w.log.Error("could not store the offset past parked records; they will be read again", "topic", first.Topic, "partition", first.Partition, "offset", first.Offset, "err", err)
			return false
		}
		finished := make([]*kgo.Record, n)
		for i := range n {
			finished[i] = msgs[i].rec
			switch {
			case done[i]:
				w.metrics.duplicates.Inc()
				spans.end(i, outcomeDuplicate, errs[i])
			case routes[i].kind == routeRetry:
				w.metrics.parkedForRetry(routes[i].level)
				spans.end(i, outcomeRetried, errs[i])
			default:
				w.metrics.deadLettered.Inc()
				spans.end(i, outcomeDeadLettered, errs[i])
			}
		}
		w.metrics.inFlight.Sub(float64(w.tracker.doneAll(finished)))
	}
	if n < len(msgs) {
		w.parkFailStreak.Add(1)
		w.metrics.parkFailures.Inc()
		w.log.Error("could not park a failed record; it will be read again", "topic", first.Topic, "partition", first.Partition, "offset", msgs[n].rec.Offset, "err", produceErr)
		return false
	}
	w.parkFailStreak.Store(0)
	return true
}

// advanceAttempts is how many times the offset past parked records is stored
// before the records are left to be read again.
const advanceAttempts = 3

// advance stores the offset past parked records (Advance), asking again while
// the database fails (a dropped connection, a failover) within ctx: the
// copies are in Kafka already, and giving up reads the records again and
// parks them again, a second dead-letter copy of each (the e2e suite saw it
// when a connection was terminated under the call). Asking again is safe
// because Advance is fenced by from: a first call that took effect but whose
// answer was lost makes the next one find next stored, which is success.
func (w *Worker) advance(ctx context.Context, group, topic string, partition int32, from, next int64, deadLettered []sink.Origin) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = w.txSink.Advance(ctx, group, topic, partition, from, next, deadLettered)
		var fenced *sink.FencedError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &fenced):
			if attempt > 1 && fenced.Stored == next {
				return nil // the earlier call took effect
			}
			return err
		case attempt == advanceAttempts:
			return err
		}
		w.log.Warn("could not store the offset past parked records; asking again", "topic", topic, "partition", partition, "offset", from, "attempt", attempt, "err", err)
		if !sleepCtx(ctx, time.Duration(attempt)*100*time.Millisecond) {
			return err
		}
	}
}

// fence notes that the stored offset of a partition is not this worker's
// position: past it (another consumer handled the records) or short of it
// (the database lost acknowledged commits: the records after it are written
// again). settle resumes the partition at the stored offset. A partition
// whose stored offset is gone altogether goes back to where this worker
// resumed it, which is stored again.
func (w *Worker) fence(f *sink.FencedError) {
	p := tp{f.Topic, f.Partition}
	stored := f.Stored
	if stored < 0 {
		w.mu.Lock()
		start, ok := w.dbStart[p]
		w.mu.Unlock()
		if !ok {
			return // not assigned here any more
		}
		restored, err := w.txSink.InitOffsets(context.Background(), w.cfg.Source.ConsumerGroup, map[string]map[int32]int64{f.Topic: {f.Partition: start}})
		if err != nil {
			w.log.Error("could not store the offset of a partition whose stored offset is gone; it will be tried again", "topic", f.Topic, "partition", f.Partition, "err", err)
			return
		}
		stored = restored[f.Topic][f.Partition]
	}
	if stored < f.Tried {
		w.metrics.dbRewinds.Inc()
		w.log.Error("the database lost commits it had acknowledged: writing the records after its stored offset again", "topic", f.Topic, "partition", f.Partition, "position", f.Tried, "stored", stored)
	} else {
		w.log.Warn("records already handled by another consumer; resuming at the stored offset", "topic", f.Topic, "partition", f.Partition, "offset", f.Tried, "stored", stored)
	}
	w.mu.Lock()
	w.fencedAt[p] = stored
	w.mu.Unlock()
}

func (w *Worker) takeFenced() map[tp]int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.fencedAt
	w.fencedAt = map[tp]int64{}
	return out
}
