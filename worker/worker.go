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
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/plugin/kprom"

	"github.com/sluice-dev/sluice/internal/workerconfig"
	"github.com/sluice-dev/sluice/worker/failure"
	"github.com/sluice-dev/sluice/worker/sink"
)

// errSinkFailing is what the breaker is told when a sink call failed.
var errSinkFailing = errors.New("every record of the sink call failed transiently")

// parkRetryBackoff is how long a partition waits after a failed produce to a
// retry or dead-letter topic before its records are read again.
const parkRetryBackoff = time.Second

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

func (w *Worker) onBreakerStateChange(_ string, from, to gobreaker.State) {
	w.log.Warn("circuit breaker state changed", "from", from.String(), "to", to.String())
	switch to {
	case gobreaker.StateOpen:
		w.mu.Lock()
		w.openUntil = w.now().Add(w.cfg.CircuitBreaker.OpenDuration.Duration)
		w.mu.Unlock()
		w.metrics.circuit.Set(circuitOpen)
	case gobreaker.StateHalfOpen:
		w.metrics.circuit.Set(circuitHalfOpen)
	default:
		w.metrics.circuit.Set(circuitClosed)
	}
}

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

// sinkOpenBackoffMax caps the wait between attempts to open the sink.
const sinkOpenBackoffMax = 30 * time.Second

// openSinkRetrying opens the sink, retrying with backoff while it can't be
// reached (a database that is down at start): the worker stays alive and
// unready, saying why, instead of exiting into a crash loop whose restarts
// back off for minutes. It returns nil when ctx ends first.
func (w *Worker) openSinkRetrying(ctx context.Context) sink.Sink {
	for attempt := 1; ; attempt++ {
		snk, err := openSink(ctx, w.cfg, w.producer.Load)
		if err == nil {
			w.sinkOpenErr.Store(nil)
			return snk
		}
		w.sinkOpenErr.Store(&err)
		w.metrics.sinkOpenFailures.Inc()
		wait := min(time.Duration(attempt)*time.Second, sinkOpenBackoffMax)
		w.log.Warn("could not open the sink; retrying", "attempt", attempt, "in", wait, "err", err)
		if !sleepCtx(ctx, wait) {
			return nil
		}
	}
}

// reportDurability says, once at start, when the sink's database can forget
// commits it acknowledged: the guarantees rest on them staying.
func (w *Worker) reportDurability() {
	d, ok := w.snk.(interface{ DurabilityRisks() []string })
	if !ok {
		return
	}
	risks := d.DurabilityRisks()
	w.metrics.durabilityRisks.Set(float64(len(risks)))
	cost := "at-least-once: a record whose row the database forgets after the Kafka commit is lost"
	if w.offsetsInDB() {
		cost = "exactly-once: rows and offsets are lost together; the worker goes back to the offset the database kept and writes the records after it again (no gap, no duplicate; dead-letter copies may be duplicated)"
	}
	for _, r := range risks {
		w.log.Warn("the sink's database can lose commits it acknowledged", "setting", r, "cost", cost)
	}
}

// jitter waits a random time up to maxJitter, so that a restarted fleet joins
// the group (and hits the sink) spread out rather than all at once. A worker
// that a scale-up added joins at once: the backlog wants its capacity now,
// and the few pods a scale-up adds are no stampede (each still warms up).
func (w *Worker) jitter(ctx context.Context) error {
	maxJitter := w.cfg.Startup.MaxJitter.Duration
	if maxJitter <= 0 {
		return nil
	}
	if w.opts.ScaleUpPath != "" {
		hint, err := workerconfig.LoadScaleUp(w.opts.ScaleUpPath)
		switch {
		case err != nil:
			w.log.Warn("ignoring the scale-up hint", "err", err)
		case hint.AddedBy(w.now()):
			w.log.Info("started by a scale-up: joining without startup jitter", "scaledUpAt", hint.At.Time, "from", hint.From, "to", hint.To)
			return nil
		}
	}
	d := rand.N(maxJitter)
	w.log.Info("startup jitter", "delay", d)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// clientOpts are the consumer's options for at-least-once delivery: the source
// and retry topics, rebalances blocked while a poll is handled, and finished
// work committed when partitions are revoked.
func (w *Worker) clientOpts() ([]kgo.Opt, error) {
	opts, err := w.groupOpts(append([]string{w.cfg.Source.Topic}, w.cfg.Delivery.RetryTopics...))
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsRevoked(w.onRevoked),
		kgo.OnPartitionsLost(w.onLost),
	)
	if w.offsetsInDB() {
		// Newly assigned partitions start where the database says, not where
		// Kafka's commit does. kgo calls this after fetching the commits and
		// before consuming the partitions, within the group session.
		opts = append(opts, kgo.AdjustFetchOffsetsFn(w.offsetsFromDB))
	}
	return opts, nil
}

// consumerOpts are what every consuming client has, a consumer group's or a
// share group's: the connection, the bounded fetches, metrics, logs, tracing
// and the pod's client ID.
func (w *Worker) consumerOpts() ([]kgo.Opt, error) {
	cfg := w.cfg
	conn, err := connFromConfig(cfg.Kafka)
	if err != nil {
		return nil, err
	}
	opts, err := conn.Opts()
	if err != nil {
		return nil, err
	}
	kp := kprom.NewMetrics("sluice_worker_kafka", kprom.Registerer(w.reg), kprom.Gatherer(w.reg))
	opts = append(opts,
		kgo.FetchMaxWait(cfg.Consumer.FetchMaxWait.Duration),
		// Bound the read-ahead: kgo's 50 MiB default fetch of small records decodes
		// into hundreds of thousands of record objects (~280 MiB peak RSS on a 1M
		// backlog); the worker takes maxPollRecords at a time anyway.
		kgo.FetchMaxBytes(orDefault(cfg.Consumer.FetchMaxBytes, workerconfig.DefaultFetchMaxBytes)),
		kgo.FetchMaxPartitionBytes(orDefault(cfg.Consumer.MaxPartitionFetchBytes, workerconfig.DefaultMaxPartitionFetchBytes)),
		kgo.WithHooks(kp),
		kgo.WithLogger(newKgoLogger(w.log)),
	)
	opts = append(opts, w.tracing.kafkaOpts()...)
	if id := clientID(); id != "" {
		opts = append(opts, kgo.ClientID(id))
	}
	return opts, nil
}

// groupOpts are the group consumer's options shared by both delivery modes.
func (w *Worker) groupOpts(topics []string) ([]kgo.Opt, error) {
	cfg := w.cfg
	opts, err := w.consumerOpts()
	if err != nil {
		return nil, err
	}
	start := kgo.NewOffset().AtStart()
	if cfg.Source.StartFrom == workerconfig.StartFromLatest {
		start = kgo.NewOffset().AtEnd()
	}
	opts = append(opts,
		kgo.ConsumerGroup(cfg.Source.ConsumerGroup),
		kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(start),
		kgo.DisableAutoCommit(),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.SessionTimeout(cfg.Consumer.SessionTimeout.Duration),
		kgo.HeartbeatInterval(cfg.Consumer.HeartbeatInterval.Duration),
		kgo.RebalanceTimeout(cfg.Consumer.MaxPollInterval.Duration),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) {
			w.joined.Store(true)
			w.metrics.rebalances.WithLabelValues("assigned").Inc()
		}),
	)
	if cfg.Consumer.GroupProtocol == workerconfig.GroupProtocolConsumer {
		// KIP-848: the broker assigns ("uniform", the server-side sticky
		// assignor, for the sticky balancer); the session timeout and
		// heartbeat interval are the group's configs. A broker without
		// KIP-848 gets the classic protocol with the (eager) sticky balancer.
		opts = append(opts, kgo.Balancers(kgo.StickyBalancer()), kgo.ServerSideBalancer())
	}
	if cfg.Consumer.StaticMembership {
		id, err := staticInstanceID()
		if err != nil {
			return nil, err
		}
		// kgo then skips LeaveGroup on close: the group keeps the member's
		// partitions for it until its session times out.
		opts = append(opts, kgo.InstanceID(id))
	}
	return opts, nil
}

// staticInstanceID is a static member's group.instance.id: its pod name,
// stable across restarts because the workers are a StatefulSet.
func staticInstanceID() (string, error) {
	id := os.Getenv(workerconfig.PodNameEnv)
	if id == "" {
		return "", errors.New("consumer.staticMembership needs POD_NAME (the StatefulSet pod's name) as the group.instance.id; it is empty")
	}
	return id, nil
}

// newProducer makes the client that writes parked copies (and the kafka sink's
// records): idempotent, acks=all, bounded delivery time.
func (w *Worker) newProducer() (*kgo.Client, error) {
	conn, err := connFromConfig(w.cfg.Kafka)
	if err != nil {
		return nil, err
	}
	opts, err := conn.Opts()
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// A retriable produce error (NOT_ENOUGH_REPLICAS, a leader move) is retried
		// after a metadata refresh; with kgo's 5s default min age, every retry
		// would outlive the delivery timeout and fail the record (and, for an
		// idempotent producer, bump its epoch and fail the next ones the same way).
		kgo.MetadataMinAge(producerMetadataMinAge),
		kgo.RecordDeliveryTimeout(deliveryTimeout(w.cfg.Consumer.MaxPollInterval.Duration)),
		kgo.ProducerLinger(time.Millisecond),
		kgo.WithLogger(newKgoLogger(w.log.With("client", "producer"))),
	)
	opts = append(opts, w.tracing.kafkaOpts()...)
	if id := clientID(); id != "" {
		opts = append(opts, kgo.ClientID(id+"-producer"))
	}
	cl, err := kgo.NewClient(append(opts, w.opts.KafkaOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	return cl, nil
}

func orDefault(v, def int32) int32 {
	if v == 0 {
		return def
	}
	return v
}

// producerMetadataMinAge bounds how long a retriable produce error waits for
// fresh metadata; deliveryTimeout is always several times longer.
const producerMetadataMinAge = 500 * time.Millisecond

// replaceStreak is how many consecutive failed parks make the worker replace
// its producer.
const replaceStreak = 3

// replaceProducer swaps in a fresh producer and closes the old one, failing its
// buffered records (their source records are re-read). franz-go v1.22.3 can
// wedge an idempotent producer after an epoch bump under repeated
// NOT_ENOUGH_REPLICAS; a new client heals that without restarting the worker.
func (w *Worker) replaceProducer(why string) {
	fresh, err := w.newProducer()
	if err != nil {
		w.log.Error("could not replace the Kafka producer", "err", err)
		return
	}
	old := w.producer.Swap(fresh)
	w.parkFailStreak.Store(0)
	w.metrics.producerResets.Inc()
	w.log.Warn("replaced the Kafka producer", "why", why)
	go old.Close()
}

// deliveryTimeout bounds how long a produce (a parked copy, a kafka-sink
// record) may take: a third of maxPollInterval, between 2s and 30s. A park that
// can't finish in time fails, and its record is re-read after a pause, so the
// poll loop always gets back to the group well within the rebalance timeout.
func deliveryTimeout(maxPollInterval time.Duration) time.Duration {
	return min(max(maxPollInterval/3, 4*producerMetadataMinAge), 30*time.Second)
}

// processingContext is the context of sink calls: processing outlives a
// SIGTERM (ctx's end) by at most the shutdown timeout, so in-flight records
// are finished, not abandoned mid-call.
func (w *Worker) processingContext(ctx context.Context) (context.Context, func()) {
	procCtx, procCancel := context.WithCancel(context.WithoutCancel(ctx))
	stopAfter := context.AfterFunc(ctx, func() {
		time.AfterFunc(w.cfg.Consumer.ShutdownTimeout.Duration, procCancel)
	})
	return procCtx, func() {
		stopAfter()
		procCancel()
	}
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
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				w.log.Warn("fetch error", "topic", topic, "partition", p, "err", err)
			}
		})
		if _, gen := w.client.GroupMetadata(); gen > 0 {
			w.joined.Store(true)
		}

		if w.cfg.Processing.Concurrent() {
			w.settle(procCtx, w.processConcurrently(ctx, procCtx, w.startRound(fetches)))
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

// commitRetryInterval is how soon an idle worker tries again to commit offsets
// that it couldn't commit (or that it must catch up) when no record comes.
const commitRetryInterval = time.Second

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

// sinkCall is one admitted call to the sink: report tells the breaker how it
// went; probe says whether it is the half-open circuit's trial call.
type sinkCall struct {
	report func(error)
	probe  bool
}

// admit passes n records through the rate limit and the circuit breaker. When
// the call may not go ahead it returns false and when to try again (zero:
// shutting down).
func (w *Worker) admit(ctx context.Context, n int) (sinkCall, time.Time, bool) {
	if err := w.limiter.wait(ctx, n, w.now()); err != nil {
		return sinkCall{}, time.Time{}, false
	}
	w.metrics.rateLimit.Set(float64(w.limiter.bucket.Limit()))
	report, err := w.breaker.Allow()
	if err != nil {
		// Open (or half-open with its trial call taken): backpressure. The
		// records stay in Kafka, not in the dead-letter topic.
		w.mu.Lock()
		until := w.openUntil
		w.mu.Unlock()
		if now := w.now(); !until.After(now) {
			until = now.Add(min(w.cfg.CircuitBreaker.OpenDuration.Duration, 500*time.Millisecond))
		}
		return sinkCall{}, until, false
	}
	return sinkCall{report: report, probe: w.breaker.State() == gobreaker.StateHalfOpen}, time.Time{}, true
}

// failedProbe reports a call in which transient of n records failed
// transiently. A failed trial call is backpressure like the open circuit it
// reopens: its records are read again later (after the returned time), not
// walked through the retry topics.
func (w *Worker) failedProbe(c sinkCall, transient, n int) (time.Time, bool) {
	if !c.probe || transient != n {
		return time.Time{}, false
	}
	c.report(errSinkFailing)
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.openUntil, true
}

// done reports a call to the breaker: it fails when every record in it failed
// transiently (the downstream is sick); poison pills are the records' fault.
func (c sinkCall) done(transient, n int) {
	if transient == n {
		c.report(errSinkFailing)
	} else {
		c.report(nil)
	}
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

// commitAsync starts committing offsets and returns: the next poll's records
// are handled while the commit travels (a synchronous commit per poll was a
// quarter of the loop's time, see BENCHMARKS.md). One commit is on its way at
// a time; while it is, the finished offsets wait for the next round, which
// commits the newer ones. When the commit returns and offsets finished in the
// meantime are still uncommitted, it wakes the poll loop, whose next round
// commits them at once: after a burst, the last records used to wait for the
// commit retry interval (1 s, in 16 of 20 runs), keeping the lag up and a
// crash in that second re-reading them. Commits are issued by the poll loop
// only, while rebalances are blocked; revocation and shutdown commit
// synchronously, after any commit still on its way (kgo keeps commits in order).
func (w *Worker) commitAsync(ctx context.Context, offsets map[string]map[int32]kgo.EpochOffset) {
	if len(offsets) == 0 || !w.committing.CompareAndSwap(false, true) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, deliveryTimeout(w.cfg.Consumer.MaxPollInterval.Duration))
	w.client.CommitOffsets(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		cancel()
		ok := w.committedOrNot(offsets, resp, err)
		w.committing.Store(false)
		if ok && w.tracker.uncommitted() {
			if wake := w.wakePoll.Load(); wake != nil {
				(*wake)()
			}
		}
	})
}

// commit commits offsets and waits, giving up after the delivery timeout: a
// commit the coordinator can't take now (it moved, it is loading) is retried
// with the next round's offsets instead of holding the poll loop, and with it
// the group.
func (w *Worker) commit(ctx context.Context, cl *kgo.Client, offsets map[string]map[int32]kgo.EpochOffset) {
	if len(offsets) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, deliveryTimeout(w.cfg.Consumer.MaxPollInterval.Duration))
	defer cancel()
	cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		w.committedOrNot(offsets, resp, err)
	})
}

// committedOrNot takes a commit's outcome: the tracker learns what was
// committed; a failure is counted and logged, and the next round commits
// again. It reports whether the commit succeeded.
func (w *Worker) committedOrNot(offsets map[string]map[int32]kgo.EpochOffset, resp *kmsg.OffsetCommitResponse, err error) bool {
	if err == nil {
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if e := kerr.ErrorForCode(p.ErrorCode); e != nil {
					err = fmt.Errorf("%s[%d]: %w", t.Topic, p.Partition, e)
				}
			}
		}
	}
	if err != nil {
		w.metrics.commits.WithLabelValues(commitResultFailed).Inc()
		w.log.Warn("commit failed; the records will be committed with the next round or re-read", "err", err)
		return false
	}
	w.metrics.commits.WithLabelValues(commitResultSucceeded).Inc()
	w.tracker.committed(offsets)
	return true
}

func (w *Worker) pause(p tp, until time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.pausedUntil[p]; !ok {
		w.client.PauseFetchPartitions(map[string][]int32{p.topic: {p.partition}})
	}
	w.pausedUntil[p] = until
	w.metrics.paused.Set(float64(len(w.pausedUntil)))
}

// resumeDue resumes the partitions whose pause is over.
func (w *Worker) resumeDue() {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	resume := map[string][]int32{}
	for p, until := range w.pausedUntil {
		if !until.After(now) {
			resume[p.topic] = append(resume[p.topic], p.partition)
			delete(w.pausedUntil, p)
		}
	}
	if len(resume) > 0 {
		w.client.ResumeFetchPartitions(resume)
	}
	w.metrics.paused.Set(float64(len(w.pausedUntil)))
}

// onRevoked commits what is finished in the partitions being taken away, before
// they go: the next owner starts exactly after it.
func (w *Worker) onRevoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	w.metrics.rebalances.WithLabelValues("revoked").Inc()
	if offsets := w.tracker.committableFor(revoked); len(offsets) > 0 {
		w.commit(ctx, cl, offsets)
	}
	w.forget(cl, revoked)
}

// onLost forgets partitions lost without a chance to commit (session expired);
// their next owner re-reads from the last commit.
func (w *Worker) onLost(_ context.Context, cl *kgo.Client, lost map[string][]int32) {
	w.metrics.rebalances.WithLabelValues("lost").Inc()
	w.forget(cl, lost)
}

func (w *Worker) forget(cl *kgo.Client, parts map[string][]int32) {
	w.metrics.inFlight.Sub(float64(w.tracker.drop(parts)))
	w.mu.Lock()
	for topic, ps := range parts {
		for _, p := range ps {
			delete(w.pausedUntil, tp{topic, p})
			delete(w.fencedAt, tp{topic, p})
			delete(w.dbStart, tp{topic, p})
		}
	}
	w.metrics.paused.Set(float64(len(w.pausedUntil)))
	w.mu.Unlock()
	cl.ResumeFetchPartitions(parts) // a partition assigned again later starts unpaused
}

// finalizeBudget bounds what a shutdown does after the drain (itself bounded
// by shutdownTimeout): the last commit and leaving the group. So a SIGTERM
// ends the process within shutdownTimeout + finalizeBudget in every state,
// inside the pod's grace period. A leave that can't finish in time (a
// JoinGroup in flight waits for the whole rebalance) is abandoned: the broker
// expires the member's session, and the records it had not committed are
// read again by the next owner.
const finalizeBudget = 5 * time.Second

// shutdown commits what is finished and leaves the group (Close runs the revoke
// callback, which commits again for the partitions given up), within
// finalizeBudget.
func (w *Worker) shutdown(closeClient func() <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), finalizeBudget)
	defer cancel()
	w.commit(ctx, w.client, w.tracker.committable())
	w.client.AllowRebalance()
	w.log.Info("shutting down: committed finished records, leaving the group")
	select {
	case <-closeClient():
	case <-ctx.Done():
		w.log.Warn("shutting down: leaving the group did not finish in time; exiting without it (the broker expires the session)", "waited", finalizeBudget)
	}
	return nil
}

// closeOnce wraps a blocking close so that it runs once, in the background;
// the returned function starts it (the first time) and returns a channel
// closed when it has finished.
func closeOnce(fn func()) func() <-chan struct{} {
	done := make(chan struct{})
	var once sync.Once
	return func() <-chan struct{} {
		once.Do(func() {
			go func() {
				defer close(done)
				fn()
			}()
		})
		return done
	}
}

// closeWithin starts a close (closeOnce) and waits for it at most d.
func closeWithin(d time.Duration, closeFn func() <-chan struct{}) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-closeFn():
	case <-t.C:
	}
}
