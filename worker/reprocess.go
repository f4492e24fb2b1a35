package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/time/rate"

	"github.com/sluice-dev/sluice/internal/replay"
	"github.com/sluice-dev/sluice/worker/failure"
	"github.com/sluice-dev/sluice/worker/sink"
)

// ReprocessPlan and ReprocessResult are the plan a Reprocess Job runs and what
// it did (internal/replay defines them for the operator and the worker).
type (
	ReprocessPlan   = replay.ReprocessPlan
	ReprocessResult = replay.ReprocessCounts
)

// The Job's environment (internal/replay).
const (
	ReprocessPlanEnv  = replay.ReprocessPlanEnv
	TerminationLogEnv = replay.TerminationLogEnv
)

// ErrReprocessUnsupported: the pipeline's guarantee can't be reprocessed
// through keys (the binary exits with 2: the Job fails at once).
var ErrReprocessUnsupported = errors.New("reprocess needs AtLeastOnce delivery (an idempotent sink): this pipeline is ExactlyOnce; use a StreamReplay of mode Rewind")

// reprocessBatch bounds the records written in one sink call and committed
// in one position update.
const reprocessBatch = 500

// Reprocess runs plan: it reads each partition of the snapshot from the
// position its group committed (the snapshot's start on the first run), writes
// the selected records to the sink in offset order, and commits the position
// and the partition's counts after each batch, once the sink acknowledged it
// (and a failed record's dead-letter copy is acknowledged). A crash re-writes
// at most the batch in flight: the idempotency key is the pipeline's, so an
// idempotent sink sees no second effect. A record that fails is retried in
// place with the pipeline's backoff, as many times as the pipeline would
// (its retry topics plus one), then counted failed.
func (w *Worker) Reprocess(ctx context.Context, plan ReprocessPlan) (ReprocessResult, error) {
	if w.exactlyOnce() || w.offsetsInDB() {
		// Its sinks keep exactly-once with offsets and transactions, not keys:
		// a rewind is the way to process records again.
		return ReprocessResult{}, ErrReprocessUnsupported
	}
	var err error
	if w.tracing, err = w.newTracing(ctx); err != nil {
		return ReprocessResult{}, err
	}
	defer w.tracing.shutdown(w)
	producer, err := w.newProducer()
	if err != nil {
		return ReprocessResult{}, err
	}
	w.producer.Store(producer)
	defer func() { w.producer.Load().Close() }()
	if w.snk = w.opts.Sink; w.snk == nil {
		if w.snk = w.openSinkRetrying(ctx); w.snk == nil {
			return ReprocessResult{}, ctx.Err()
		}
	}
	defer func() { _ = w.snk.Close() }()
	w.reportDurability()

	conn, err := connFromConfig(w.cfg.Kafka)
	if err != nil {
		return ReprocessResult{}, err
	}
	opts, err := conn.Opts()
	if err != nil {
		return ReprocessResult{}, err
	}
	opts = append(opts, w.opts.KafkaOpts...)
	admin, err := kgo.NewClient(opts...)
	if err != nil {
		return ReprocessResult{}, fmt.Errorf("kafka client: %w", err)
	}
	defer admin.Close()
	adm := kadm.NewClient(admin)
	left, total, err := reprocessPosition(ctx, adm, plan)
	if err != nil {
		return ReprocessResult{}, err
	}
	w.log.Info("reprocessing", "replay", plan.Replay, "partitions", len(left), "resumed", total)
	if len(left) == 0 {
		return total.sum(), nil
	}
	r := &reprocessRun{w: w, plan: plan, adm: adm, counts: total}
	if plan.RateLimit > 0 {
		r.limiter = rate.NewLimiter(rate.Limit(plan.RateLimit), reprocessBatch) // a batch waits for its tokens at once
	}
	if err := r.read(ctx, opts, left); err != nil {
		return r.counts.sum(), err
	}
	return r.counts.sum(), nil
}

// reprocessCounts are the counts per partition, as committed.
type reprocessCounts map[tp]replay.ReprocessCounts

func (c reprocessCounts) sum() ReprocessResult {
	var out ReprocessResult
	for _, pc := range c {
		out = out.Add(pc)
	}
	return out
}

// reprocessPosition is where each partition of the plan resumes (its
// committed offset, within the snapshot) and the counts earlier runs
// committed with it; partitions already at their end are left out.
func reprocessPosition(ctx context.Context, adm *kadm.Client, plan ReprocessPlan) ([]replay.Partition, reprocessCounts, error) {
	committed, committedCounts, err := replay.ReprocessPositions(ctx, adm, plan.Group)
	if err != nil {
		return nil, nil, err
	}
	counts := reprocessCounts{}
	var left []replay.Partition
	for _, p := range plan.Partitions {
		at := p.Start
		if c, ok := committed.Lookup(p.Topic, p.Partition); ok && c.At > at {
			at = min(c.At, p.End)
			counts[tp{p.Topic, p.Partition}] = committedCounts[p.Topic][p.Partition]
		}
		if at < p.End {
			left = append(left, replay.Partition{Topic: p.Topic, Partition: p.Partition, Start: at, End: p.End})
		}
	}
	return left, counts, nil
}

// reprocessRun is one run of a plan.
type reprocessRun struct {
	w       *Worker
	plan    ReprocessPlan
	adm     *kadm.Client
	limiter *rate.Limiter
	counts  reprocessCounts
	// failedCalls counts the sink calls in a row whose every record failed
	// transiently.
	failedCalls int
}

// read consumes the partitions from their positions to their ends and
// handles each poll's records partition by partition.
func (r *reprocessRun) read(ctx context.Context, opts []kgo.Opt, left []replay.Partition) error {
	ends := map[tp]int64{}
	offsets := map[string]map[int32]kgo.Offset{}
	for _, p := range left {
		ends[tp{p.Topic, p.Partition}] = p.End
		if offsets[p.Topic] == nil {
			offsets[p.Topic] = map[int32]kgo.Offset{}
		}
		offsets[p.Topic][p.Partition] = kgo.NewOffset().At(p.Start)
	}
	reader, err := kgo.NewClient(append(append(opts, replay.ReaderOpts()...), kgo.ConsumePartitions(offsets))...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer reader.Close()
	for len(ends) > 0 {
		pollCtx, cancel := context.WithTimeout(ctx, reprocessIdlePoll)
		fetches := reader.PollRecords(pollCtx, reprocessBatch)
		cancel()
		if err := ctx.Err(); err != nil {
			return err
		}
		var fatal error
		fetches.EachError(func(topic string, p int32, err error) {
			switch {
			case errors.Is(err, context.DeadlineExceeded):
			case errors.Is(err, context.Canceled) || errors.Is(err, kgo.ErrClientClosed):
				fatal = err
			default:
				r.w.log.Warn("reprocess: could not read a partition; retrying", "topic", topic, "partition", p, "err", err)
			}
		})
		if fatal != nil {
			return fatal
		}
		if fetches.NumRecords() == 0 {
			// Nothing came: a partition whose records up to its end were
			// deleted since the snapshot (retention, DeleteRecords) will
			// never show one; it is finished.
			if err := r.finishEmptied(ctx, ends, reader); err != nil {
				return err
			}
			continue
		}
		var err error
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			k := tp{fp.Topic, fp.Partition}
			end, ok := ends[k]
			if err != nil || !ok || len(fp.Records) == 0 {
				return
			}
			var finished bool
			if finished, err = r.partition(ctx, k, fp.Records, end); finished {
				delete(ends, k)
				reader.PauseFetchPartitions(map[string][]int32{k.topic: {k.partition}})
			}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// reprocessIdlePoll is how long a poll waits for records before the run
// checks whether the partitions it waits on still hold any.
const reprocessIdlePoll = 5 * time.Second

// finishEmptied ends the partitions whose log now starts at or past their
// snapshot end: the records left to read were deleted (retention,
// DeleteRecords) and can't be reprocessed. Their position is committed at the
// end, with the counts unchanged, and the loss is logged.
func (r *reprocessRun) finishEmptied(ctx context.Context, ends map[tp]int64, reader *kgo.Client) error {
	topics := map[string]bool{}
	for k := range ends {
		topics[k.topic] = true
	}
	var names []string
	for t := range topics {
		names = append(names, t)
	}
	starts, err := r.adm.ListStartOffsets(ctx, names...)
	if err != nil {
		return fmt.Errorf("list the start offsets of %v: %w", names, err)
	}
	var emptied []error
	starts.Each(func(o kadm.ListedOffset) {
		k := tp{o.Topic, o.Partition}
		end, ok := ends[k]
		if !ok || o.Err != nil || o.Offset < end {
			return
		}
		r.w.log.Warn("reprocess: the records left to read in a partition were deleted since the snapshot; it ends there", "topic", o.Topic, "partition", o.Partition, "logStart", o.Offset, "snapshotEnd", end)
		if err := r.commit(ctx, k, end, r.counts[k]); err != nil {
			emptied = append(emptied, err)
			return
		}
		delete(ends, k)
		reader.PauseFetchPartitions(map[string][]int32{k.topic: {k.partition}})
	})
	return errors.Join(emptied...)
}

// partition handles one poll's records of a partition (offset order), in
// batches: each is written, its failures settled, and the position after it
// committed with the partition's counts. It reports whether the partition
// reached its end.
func (r *reprocessRun) partition(ctx context.Context, k tp, recs []*kgo.Record, end int64) (bool, error) {
	w := r.w
	var batch []*message
	var next int64
	flush := func() error {
		if next == 0 {
			return nil
		}
		pc := r.counts[k]
		done, failed, err := r.deliver(ctx, batch)
		if err != nil {
			return err
		}
		pc.Done += done
		pc.Failed += failed
		if err := r.commit(ctx, k, next, pc); err != nil {
			return err
		}
		r.counts[k] = pc
		batch, next = batch[:0], 0
		return nil
	}
	for _, rec := range recs {
		if rec.Offset >= end {
			break
		}
		next = rec.Offset + 1
		if r.plan.Select.Decide(rec) == replay.Copy {
			info, err := failureInfoOf(rec, w.attempts[rec.Topic])
			var key string
			if err == nil {
				key, err = configuredKey(w.cfg.IdempotencyKey, rec)
			}
			m := newMessage(rec, info, key)
			if err != nil {
				// Undecodable: it can't reach the sink; it fails as it did.
				if err := r.failed(ctx, &m, err); err != nil {
					return false, err
				}
				pc := r.counts[k]
				pc.Failed++
				r.counts[k] = pc
			} else {
				batch = append(batch, &m)
			}
		}
		if len(batch) >= reprocessBatch {
			if err := flush(); err != nil {
				return false, err
			}
		}
	}
	if err := flush(); err != nil {
		return false, err
	}
	return recs[len(recs)-1].Offset >= end-1, nil
}

// deliver writes a batch (through the rate limit, in sink calls of the
// sink's batch size, each with the processing timeout), retries its failures
// in place with the pipeline's backoff, and settles what still fails. It
// returns the records done and failed; an error means the position must not
// move (the run stops and is resumed).
func (r *reprocessRun) deliver(ctx context.Context, batch []*message) (done, failed int64, err error) {
	if len(batch) == 0 {
		return 0, 0, nil
	}
	w := r.w
	if r.limiter != nil {
		if err := r.limiter.WaitN(ctx, len(batch)); err != nil {
			return 0, 0, err
		}
	}
	attempts := len(w.cfg.Delivery.RetryTopics) + 1
	pending := batch
	for attempt := 1; len(pending) > 0; {
		errs, sinkFailing := r.write(ctx, pending)
		if err := ctx.Err(); err != nil {
			return 0, 0, err
		}
		if sinkFailing {
			// The sink is down, not these records: hold them, as an open
			// circuit does, without spending their attempts.
			w.log.Warn("reprocess: the sink is failing; holding the records", "for", w.cfg.CircuitBreaker.OpenDuration.Duration, "err", errors.Join(errs...))
			if !sleepCtx(ctx, w.cfg.CircuitBreaker.OpenDuration.Duration) {
				return 0, 0, ctx.Err()
			}
			continue
		}
		var again []*message
		for i, m := range pending {
			switch {
			case errs[i] == nil:
				done++
				w.metrics.processed.Inc()
			case failure.ClassOf(errs[i]) == failure.ClassTransient && attempt < attempts:
				again = append(again, m)
			default:
				if err := r.failed(ctx, m, errs[i]); err != nil {
					return 0, 0, err
				}
				failed++
			}
		}
		pending = again
		if len(pending) > 0 && !sleepCtx(ctx, w.backoff.delay(attempt)) {
			return 0, 0, ctx.Err()
		}
		attempt++
	}
	return done, failed, nil
}

// write sends msgs to the sink in calls of its batch size and returns each
// record's error, and whether the sink is failing as a whole (what opens the
// pipeline's circuit): a call of several records all of which failed
// transiently, or FailureThreshold calls in a row that did (one record per
// call can't tell a bad record from a sick sink until then).
func (r *reprocessRun) write(ctx context.Context, msgs []*message) (errs []error, failing bool) {
	w := r.w
	size := w.snk.MaxBatch()
	if size <= 0 {
		size = len(msgs)
	}
	errs = make([]error, 0, len(msgs))
	for from := 0; from < len(msgs); from += size {
		chunk := msgs[from:min(from+size, len(msgs))]
		recs := make([]*sink.Record, len(chunk))
		for i, m := range chunk {
			recs[i] = &m.sink
		}
		out := w.write(ctx, recs)
		allTransient := true
		for _, err := range out {
			if failure.ClassOf(err) != failure.ClassTransient {
				allTransient = false
			}
		}
		if allTransient {
			r.failedCalls++
			failing = failing || len(chunk) > 1
		} else {
			r.failedCalls = 0
		}
		errs = append(errs, out...)
	}
	threshold := max(int(w.cfg.CircuitBreaker.FailureThreshold), 1)
	return errs, failing || r.failedCalls >= threshold
}

// failed settles a record that failed again: a dead-letter copy when the plan
// asks for one (acknowledged before the position moves past it), and a log
// line naming it.
func (r *reprocessRun) failed(ctx context.Context, m *message, cause error) error {
	w := r.w
	class := failure.ClassOf(cause)
	w.metrics.errors.WithLabelValues(string(class)).Inc()
	w.log.Warn("a reprocessed record failed again", "topic", m.rec.Topic, "partition", m.rec.Partition, "offset", m.rec.Offset, "class", class, "err", cause)
	if !r.plan.DeadLetter {
		return nil
	}
	out := failedCopy(m.rec, m.info, w.cfg.Delivery.DeadLetterTopic, string(class), cause, w.now(), time.Time{})
	if err := w.producer.Load().ProduceSync(ctx, out).FirstErr(); err != nil {
		return fmt.Errorf("dead-letter copy of %s/%d@%d: %w", m.rec.Topic, m.rec.Partition, m.rec.Offset, err)
	}
	w.metrics.deadLettered.Inc()
	return nil
}

// commit stores a partition's position and counts in the replay's group.
func (r *reprocessRun) commit(ctx context.Context, k tp, next int64, pc replay.ReprocessCounts) error {
	meta, err := json.Marshal(pc)
	if err != nil {
		return err
	}
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: k.topic, Partition: k.partition, At: next, LeaderEpoch: -1, Metadata: string(meta)})
	_, err = replay.UntilCoordinatorSettles(ctx, func() (kadm.OffsetResponses, error) {
		resp, err := r.adm.CommitOffsets(ctx, r.plan.Group, offs)
		if err == nil {
			err = resp.Error()
		}
		return resp, err
	})
	if err != nil {
		return fmt.Errorf("commit the position of %s/%d in group %s: %w", k.topic, k.partition, r.plan.Group, err)
	}
	return nil
}
