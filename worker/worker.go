// Package worker is Sluice's Kafka consumer: it polls, hands each partition's
// records through a short pipeline (decode → rate limit → circuit breaker →
// sink), routes failures to retry and dead-letter topics, and commits an offset
// only when every record before it is durably handled.
//
// The loop reads:
//
//	poll (rebalances blocked) → process partitions concurrently → settle:
//	wait for parked copies to be acknowledged, rewind and pause any partition
//	with unfinished records, commit the finished prefix → allow rebalances.
//
// Anything that can't be handled now (a retry not yet due, an open circuit, a
// failed produce to a retry topic) is handled the same way: the partition is
// rewound to its first unfinished record and paused until a given time. Nothing
// is held in memory across polls, nothing is skipped, and the poll loop never
// sleeps, so heartbeats and rebalances go on.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/internal/workerconfig"
	"github.com/sluice-dev/sluice/worker/failure"
	"github.com/sluice-dev/sluice/worker/sink"
)

// Options configure a Worker. Only Config is required.
type Options struct {
	Config *workerconfig.Config
	// Sink overrides the sink built from Config (tests, embedding).
	Sink sink.Sink
	// Registry receives the metrics; a new one is made when nil.
	Registry *prometheus.Registry
	Logger   *slog.Logger
	// Listener serves /healthz, /readyz and /metrics; when nil the worker listens
	// on Config.Server.Port.
	Listener net.Listener
	// KafkaOpts are appended to the client options (credentials, test tuning).
	KafkaOpts []kgo.Opt
	// Now is the clock (tests); time.Now when nil.
	Now func() time.Time
	// ScaleUpPath is the operator's scale-up hint next to the config
	// (workerconfig.ScaleUpFileName); a worker that a scale-up added skips its
	// startup jitter. Empty: no hint.
	ScaleUpPath string
}

// Worker consumes one pipeline's source and retry topics as one group member.
type Worker struct {
	cfg      *workerconfig.Config
	opts     Options
	log      *slog.Logger
	reg      *prometheus.Registry
	metrics  *metrics
	now      func() time.Time
	backoff  backoffPolicy
	attempts map[string]int // retry topic → attempts before it

	client *kgo.Client // consumer (and commits)
	// clientSet is closed once client is assigned: kgo starts joining the
	// group inside NewClient, so a group callback that is not handed the
	// client (AdjustFetchOffsetsFn) can run before the assignment.
	clientSet chan struct{}
	txSink    sink.Transactional         // the sink holding the offsets (ExactlyOnce postgres), else nil
	tracing   *tracing                   // nil when tracing is off
	producer  atomic.Pointer[kgo.Client] // parked copies and the kafka sink; replaced when stuck
	// parkFailStreak counts consecutive failed parks; a streak means the
	// producer may be wedged and is replaced.
	parkFailStreak atomic.Int32
	snk            sink.Sink
	sinkRef        atomic.Pointer[sink.Sink]
	sinkOpenErr    atomic.Pointer[error] // why the sink isn't open yet
	joined         atomic.Bool
	share          bool        // a share group member: each record is acknowledged on its own
	committing     atomic.Bool // an asynchronous commit is on its way
	// wakePoll cancels the poll the loop waits in (nil when it isn't polling).
	wakePoll atomic.Pointer[context.CancelFunc]
	tracker  *tracker
	// round is the poll loop's memory for Key and Unordered rounds.
	round   *roundState
	limiter *limiter
	breaker *gobreaker.TwoStepCircuitBreaker[struct{}]

	mu          sync.Mutex
	openUntil   time.Time        // when the open circuit lets a trial call through
	pausedUntil map[tp]time.Time // partitions paused, and until when
	fencedAt    map[tp]int64     // partitions whose stored offset is not this worker's position
	dbStart     map[tp]int64     // where each partition resumed in the database (offsets in PostgreSQL)
}

// New validates the config and prepares a worker; Run starts it.
func New(o Options) (*Worker, error) {
	if o.Config == nil {
		return nil, errors.New("worker: no config")
	}
	if err := o.Config.Validate(); err != nil {
		return nil, fmt.Errorf("worker config: %w", err)
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	cfg := o.Config
	w := &Worker{
		cfg:  cfg,
		opts: o,
		log:  o.Logger.With("pipeline", cfg.Pipeline.Namespace+"/"+cfg.Pipeline.Name),
		reg:  o.Registry,
		now:  o.Now,
		backoff: backoffPolicy{
			initial:    cfg.Delivery.Backoff.Initial.Duration,
			max:        cfg.Delivery.Backoff.Max.Duration,
			multiplier: int64(cfg.Delivery.Backoff.Multiplier),
		},
		attempts:    map[string]int{},
		tracker:     newTracker(),
		clientSet:   make(chan struct{}),
		round:       &roundState{},
		share:       cfg.Source.IsShare(),
		pausedUntil: map[tp]time.Time{},
		fencedAt:    map[tp]int64{},
		dbStart:     map[tp]int64{},
	}
	for i, t := range cfg.Delivery.RetryTopics {
		w.attempts[t] = i + 1
	}
	w.metrics = newMetrics(o.Registry, cfg.Pipeline.Name)
	w.breaker = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "sink",
		MaxRequests: 1,
		Timeout:     cfg.CircuitBreaker.OpenDuration.Duration,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= uint32(cfg.CircuitBreaker.FailureThreshold)
		},
		OnStateChange: w.onBreakerStateChange,
	})
	return w, nil
}

// Registry returns the registry holding the worker's metrics.
func (w *Worker) Registry() *prometheus.Registry { return w.reg }

// Run serves health and metrics, waits the startup jitter, joins the group and
// consumes until ctx is canceled; then it finishes in-flight records within
// the shutdown timeout, commits and leaves the group. It returns nil after a
// clean shutdown.
func (w *Worker) Run(ctx context.Context) error {
	ln := w.opts.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", ":"+strconv.Itoa(int(w.cfg.Server.Port))); err != nil {
			return fmt.Errorf("listen for health and metrics: %w", err)
		}
	}
	srvCtx, stopServer := context.WithCancel(context.Background())
	defer stopServer()
	go w.serve(srvCtx, ln, w.reg)

	if err := w.jitter(ctx); err != nil {
		return nil // stopped while waiting to start: nothing to clean up
	}

	c := w.cfg.RateLimit
	w.limiter = newLimiter(w.now(), c.WarmupDuration.Duration, c.WarmupRecordsPerSecond, c.RecordsPerSecond)
	var err error
	if w.tracing, err = w.newTracing(ctx); err != nil {
		return err
	}
	defer w.tracing.shutdown(w) // after the clients closed: their last spans are flushed too
	if w.exactlyOnce() {
		opts, err := w.groupOpts([]string{w.cfg.Source.Topic})
		if err != nil {
			return err
		}
		return w.consumeExactlyOnce(ctx, opts)
	}

	// The sink opens first: with offsets stored in its database, the consumer
	// needs it to know where to start. (The kafka sink reads the producer only
	// when it writes.)
	if w.snk = w.opts.Sink; w.snk == nil {
		if w.snk = w.openSinkRetrying(ctx); w.snk == nil {
			return nil // stopped while waiting for the sink
		}
	}
	defer func() { _ = w.snk.Close() }()
	w.reportDurability()
	w.sinkRef.Store(&w.snk)
	if w.offsetsInDB() {
		var ok bool
		if w.txSink, ok = w.snk.(sink.Transactional); !ok {
			return fmt.Errorf("ExactlyOnce with the postgres sink needs a sink that stores offsets (sink.Transactional); %T doesn't", w.snk)
		}
	}

	clientOpts := w.clientOpts
	if w.share {
		clientOpts = w.shareClientOpts
	}
	opts, err := clientOpts()
	if err != nil {
		return err
	}
	if w.client, err = kgo.NewClient(append(opts, w.opts.KafkaOpts...)...); err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	close(w.clientSet)
	closeClient := closeOnce(w.client.Close)
	closeBudget := finalizeBudget // consume's shutdown spends it itself
	defer func() { closeWithin(closeBudget, closeClient) }()
	producer, err := w.newProducer()
	if err != nil {
		return err
	}
	w.producer.Store(producer)
	defer func() { w.producer.Load().Close() }()
	if w.share {
		err = w.consumeShare(ctx, closeClient)
	} else {
		err = w.consume(ctx, closeClient)
	}
	closeBudget = 0
	return err
}

// consume is the poll loop; closeClient leaves the group and closes the
// consumer once.
func (w *Worker) consume(ctx context.Context, closeClient func() <-chan struct{}) error {
	procCtx, stopProc := w.processingContext(ctx)
	defer stopProc()

	maxPoll := int(w.cfg.Consumer.MaxPollRecords)
	for ctx.Err() == nil {
		w.resumeDue()
		pollCtx, cancel := w.pollContext(ctx)
		w.wakePoll.Store(&cancel) // an async commit that leaves offsets behind ends the wait
		fetches := w.client.PollRecords(pollCtx, maxPoll)
		w.wakePoll.Store(nil)
		cancel()
		if fetches.IsClientClosed() {
			break
		}
		w.logFetchErrors(fetches)
		if _, gen := w.client.GroupMetadata(); gen > 0 {
			w.joined.Store(true)
		}

		if w.cfg.Processing.Concurrent() {
			w.settle(procCtx, w.processConcurrently(ctx, procCtx, w.startRound(fetches), func() []kgo.FetchTopicPartition {
				return w.startRound(w.pollBuffered(maxPoll))
			}))
			w.client.AllowRebalance()
			continue
		}
		var wg sync.WaitGroup
		var pauseMu sync.Mutex
		pauses := map[tp]time.Time{}
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 {
				return
			}
			w.tracker.start(p.Records)
			w.metrics.inFlight.Add(float64(len(p.Records)))
			process := w.processPartition
			if w.txSink != nil {
				process = w.processPartitionTx
			}
			wg.Go(func() {
				if until := process(ctx, procCtx, p.Records); !until.IsZero() {
					pauseMu.Lock()
					pauses[tp{p.Topic, p.Partition}] = until
					pauseMu.Unlock()
				}
			})
		})
		wg.Wait()
		w.settle(procCtx, pauses)
		w.client.AllowRebalance()
	}
	return w.shutdown(closeClient)
}

// pollBuffered returns up to n of the records the client has buffered,
// without waiting (a round's refill; rebalances stay blocked).
func (w *Worker) pollBuffered(n int) kgo.Fetches {
	fetches := w.client.PollRecords(nil, n) //nolint:staticcheck // nil: what is buffered, at once (kgo's documented use)
	w.logFetchErrors(fetches)
	return fetches
}

func (w *Worker) logFetchErrors(fetches kgo.Fetches) {
	fetches.EachError(func(topic string, p int32, err error) {
		if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, kgo.ErrClientClosed) {
			w.log.Warn("fetch error", "topic", topic, "partition", p, "err", err)
		}
	})
}

// startRound registers a poll's records with the tracker and returns them by
// partition (Key and Unordered rounds handle every partition at once).
func (w *Worker) startRound(fetches kgo.Fetches) []kgo.FetchTopicPartition {
	var parts []kgo.FetchTopicPartition
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if len(p.Records) == 0 {
			return
		}
		w.tracker.start(p.Records)
		w.metrics.inFlight.Add(float64(len(p.Records)))
		parts = append(parts, p)
	})
	return parts
}

// pollContext bounds a poll by the next moment a paused partition is due, so a
// due retry is not kept waiting for new data elsewhere, and by the commit retry
// interval while finished offsets aren't committed.
func (w *Worker) pollContext(ctx context.Context) (context.Context, context.CancelFunc) {
	var next time.Time
	if w.tracker.uncommitted() {
		next = w.now().Add(commitRetryInterval)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, until := range w.pausedUntil {
		if next.IsZero() || until.Before(next) {
			next = until
		}
	}
	if next.IsZero() {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, next.Add(time.Millisecond))
}

// message is a record on its way through the pipeline.
type message struct {
	rec  *kgo.Record
	info failureInfo
	sink sink.Record
}

func newMessage(r *kgo.Record, info failureInfo, key string) message {
	return message{rec: r, info: info, sink: sink.Record{
		ConfiguredKey: key, Rec: r, OriginalTimestamp: info.origin.timestamp,
		Origin: sink.Origin{Topic: info.origin.topic, Partition: info.origin.partition, Offset: info.origin.offset},
	}}
}

// processPartition handles one partition's records in order and returns when the
// partition should be paused until (zero: not paused). Records it doesn't get to
// stay unfinished; settle rewinds the partition to the first of them.
func (w *Worker) processPartition(stopCtx, procCtx context.Context, recs []*kgo.Record) time.Time {
	maxBatch := w.snk.MaxBatch()
	mem := getBatchMemory(len(recs))
	defer mem.release()
	msgs, chunk := mem.msgs, mem.chunk
	retryAttempts := w.attempts[recs[0].Topic] // one partition: one topic
	for i := 0; i < len(recs); {
		if stopCtx.Err() != nil {
			return time.Time{} // shutting down: the rest is left for the next owner
		}
		now := w.now()
		chunk = chunk[:0]
		var dueAt time.Time
		for ; i < len(recs) && (maxBatch == 0 || len(chunk) < maxBatch); i++ {
			due, ok := w.prepare(&msgs[i], recs[i], retryAttempts, now)
			if !due.IsZero() {
				dueAt = due
				break
			}
			if ok {
				chunk = append(chunk, &msgs[i])
			}
		}
		if len(chunk) > 0 {
			until, ok, copies := w.deliver(procCtx, chunk)
			if !ok {
				return until
			}
			if !copies.allAcknowledged(w.parkPatience()) {
				return time.Time{} // the rest waits behind the failed copy: read again after the rewind
			}
		}
		if !dueAt.IsZero() {
			return dueAt // the head of this retry partition isn't due yet
		}
	}
	return time.Time{}
}

// prepare makes r the message m on its way to the sink and reports true, or
// parks r at once when it can't be decoded or has no idempotency key (false).
// A record of a retry topic that is not due yet is neither: prepare returns
// its due time, and the partition stops there.
func (w *Worker) prepare(m *message, r *kgo.Record, retryAttempts int, now time.Time) (time.Time, bool) {
	info, err := failureInfoOf(r, retryAttempts)
	if err != nil {
		w.parkAlone(m, r, info, err, now)
		return time.Time{}, false
	}
	if info.dueAt.After(now) {
		return info.dueAt, false
	}
	key, err := configuredKey(w.cfg.IdempotencyKey, r)
	if err != nil {
		w.parkAlone(m, r, info, err, now)
		return time.Time{}, false
	}
	*m = newMessage(r, info, key)
	return time.Time{}, true
}

// deliver passes one chunk through rate limit, breaker and sink, and routes the
// results. It returns false (and a pause time) when the chunk was not delivered,
// and the copies it parked for the records that failed: the records after one
// in its lane wait for them (parkedCopies).
func (w *Worker) deliver(ctx context.Context, chunk []*message) (time.Time, bool, parkedCopies) {
	call, until, ok := w.admit(ctx, len(chunk))
	if !ok {
		return until, false, nil
	}
	spans := w.startProcessSpans(chunk)
	recs := make([]*sink.Record, len(chunk))
	for i, m := range chunk {
		recs[i] = &m.sink
	}
	start := w.now()
	errs := w.write(ctx, recs)
	w.metrics.processing.Observe(w.now().Sub(start).Seconds())

	transient := 0
	for _, err := range errs {
		if failure.ClassOf(err) == failure.ClassTransient {
			transient++
		}
	}
	if until, failed := w.failedProbe(call, transient, len(chunk)); failed {
		spans.endAll(outcomeDeferred, errSinkFailing)
		return until, false, nil
	}
	now := w.now()
	acked := make([]*kgo.Record, 0, len(chunk))
	var copies parkedCopies
	for i, m := range chunk {
		err := errs[i]
		if err == nil {
			w.accept(m.rec)
			acked = append(acked, m.rec)
			if !m.info.origin.timestamp.IsZero() {
				w.metrics.endToEnd.Observe(now.Sub(m.info.origin.timestamp).Seconds())
			}
			spans.end(i, outcomeProcessed, nil)
			continue
		}
		kind, c := w.park(m.rec, m.info, err, now, m.sink.Trace)
		spans.end(i, routeOutcome(kind), err)
		copies.add(i, c)
	}
	w.metrics.processed.Add(float64(len(acked)))
	w.metrics.inFlight.Sub(float64(w.tracker.doneAll(acked)))
	call.done(transient, len(chunk))
	return time.Time{}, true, copies
}

// write calls the sink with the processing timeout and turns a panic into a
// poison pill (isolating the record when the batch had several).
func (w *Worker) write(ctx context.Context, recs []*sink.Record) (errs []error) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Delivery.ProcessingTimeout.Duration)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			if len(recs) > 1 {
				errs = make([]error, len(recs))
				for i := range recs {
					errs[i] = w.write(ctx, recs[i:i+1])[0]
				}
				return
			}
			errs = []error{failure.Poisonf("sink panicked: %v", p)}
		}
	}()
	errs = w.snk.Write(ctx, recs)
	if len(errs) != len(recs) {
		return sink.Fill(len(recs), failure.Transientf("sink returned %d results for %d records", len(errs), len(recs)))
	}
	return errs
}

func (w *Worker) finish(r *kgo.Record) {
	if w.tracker.done(r) {
		w.metrics.inFlight.Dec()
	}
}

// settle ends a poll round: it waits for parked copies to be acknowledged,
// rewinds every partition that still has unfinished records to the first of them
// and pauses it, then commits what is finished.
func (w *Worker) settle(ctx context.Context, pauses map[tp]time.Time) {
	w.flushParked(ctx)
	now := w.now()
	rewind := map[string]map[int32]kgo.EpochOffset{}
	for p, stored := range w.takeFenced() {
		// Another consumer stored offsets past this worker's position: resume
		// there (if the partition is still ours; a zombie loses it soon).
		w.metrics.inFlight.Sub(float64(w.tracker.forgetUnfinished(p)))
		if rewind[p.topic] == nil {
			rewind[p.topic] = map[int32]kgo.EpochOffset{}
		}
		rewind[p.topic][p.partition] = kgo.EpochOffset{Epoch: -1, Offset: stored}
	}
	for p, offset := range w.tracker.firstUnfinished() {
		if rewind[p.topic] == nil {
			rewind[p.topic] = map[int32]kgo.EpochOffset{}
		}
		rewind[p.topic][p.partition] = kgo.EpochOffset{Epoch: -1, Offset: offset}
		n := w.tracker.forgetUnfinished(p)
		w.metrics.inFlight.Sub(float64(n))
		until, ok := pauses[p]
		if !ok {
			until = now.Add(parkRetryBackoff) // a park failed: back off, then re-read
		}
		w.pause(p, until)
	}
	if len(rewind) > 0 {
		w.client.SetOffsets(rewind)
	}
	for p, until := range pauses {
		if _, rewound := rewind[p.topic][p.partition]; !rewound {
			w.pause(p, until)
		}
	}
	w.commitAsync(ctx, w.tracker.committable())
}
