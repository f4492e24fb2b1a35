package worker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/internal/testkafka"
	"github.com/sluice-dev/sluice/internal/workerconfig"
	"github.com/sluice-dev/sluice/worker/sink"
)

// broker is the Kafka a test runs against: franz-go's kfake, in process, one
// per test (the default), or the real cluster named by $SLUICE_TEST_KAFKA
// (internal/testkafka; `make test-kafka`), shared by every test.
//
// The tests name their topics "orders", "orders.retry.1", ..., "orders.dlq",
// "orders-out" and their group "test.orders". On kfake those are the names; on
// a real cluster every test gets its own: the broker's methods (createTopics,
// produce, readAll, readCommitted, committed, config, httpConfig) translate
// with name, and committed reports offsets under the tests' names.
type broker struct {
	t     *testing.T
	kafka *testkafka.Cluster
	// cluster is the kfake, nil on a real cluster (kfake-only tests call
	// testkafka.FakeOnly first).
	cluster *kfake.Cluster
	seeds   []string
	admin   *kadm.Client
	client  *kgo.Client
	// base replaces "orders" at the start of a topic name, group replaces
	// "test.orders".
	base, group string
}

func newBroker(t *testing.T) *broker {
	t.Helper()
	return brokerOn(t, testkafka.New(t, kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(100*time.Millisecond)))
}

// brokerOn is the test's broker on cluster k.
func brokerOn(t *testing.T, k *testkafka.Cluster) *broker {
	t.Helper()
	cl := k.Client(t)
	b := &broker{t: t, kafka: k, cluster: k.Fake, seeds: k.Brokers, admin: kadm.NewClient(cl), client: cl, base: "orders", group: "test.orders"}
	if k.Real() {
		b.base = testkafka.UniqueTopic(t, "orders")
		b.group = testkafka.UniqueGroup(t, "test.orders")
	}
	return b
}

// name is the broker's name for a topic or group the test calls s.
func (b *broker) name(s string) string {
	switch {
	case s == "test.orders":
		return b.group
	case strings.HasPrefix(s, "orders"):
		return b.base + strings.TrimPrefix(s, "orders")
	}
	return s
}

// testName is name's inverse.
func (b *broker) testName(s string) string {
	switch {
	case s == b.group:
		return "test.orders"
	case strings.HasPrefix(s, b.base):
		return "orders" + strings.TrimPrefix(s, b.base)
	}
	return s
}

func (b *broker) names(topics []string) []string {
	out := make([]string, len(topics))
	for i, t := range topics {
		out[i] = b.name(t)
	}
	return out
}

// createTopics creates the pipeline's topics with n partitions each (replication
// factor 1 on kfake, 3 on the 3-node cluster).
func (b *broker) createTopics(n int32, topics ...string) {
	b.t.Helper()
	b.kafka.CreateTopics(b.t, n, 0, nil, b.names(topics)...)
}

// createTopicsWith creates topics with n partitions, replication factor 3 and
// configs (the broker-failure tests).
func (b *broker) createTopicsWith(n int32, configs map[string]string, topics ...string) {
	b.t.Helper()
	b.kafka.CreateTopics(b.t, n, 3, configs, b.names(topics)...)
}

// config is testConfig with the broker's names.
func (b *broker) config() *workerconfig.Config { return b.rename(testConfig(b.seeds)) }

// httpConfig is httpConfig with the broker's names.
func (b *broker) httpConfig(url string) *workerconfig.Config {
	return b.rename(httpConfig(b.seeds, url))
}

// rename gives cfg's topics and group the broker's names.
func (b *broker) rename(cfg *workerconfig.Config) *workerconfig.Config {
	cfg.Source.Topic = b.name(cfg.Source.Topic)
	cfg.Source.ConsumerGroup = b.name(cfg.Source.ConsumerGroup)
	cfg.Delivery.RetryTopics = b.names(cfg.Delivery.RetryTopics)
	cfg.Delivery.DeadLetterTopic = b.name(cfg.Delivery.DeadLetterTopic)
	if cfg.Sink.Kafka != nil {
		cfg.Sink.Kafka.Topic = b.name(cfg.Sink.Kafka.Topic)
	}
	return cfg
}

// produce writes records with keys key-<i> (value v-<i>) to topic, spread over
// partitions by key.
func (b *broker) produce(topic string, from, to int, mutate func(i int, r *kgo.Record)) {
	b.t.Helper()
	recs := make([]*kgo.Record, 0, to-from)
	for i := from; i < to; i++ {
		r := &kgo.Record{Topic: b.name(topic), Key: fmt.Appendf(nil, "key-%d", i), Value: fmt.Appendf(nil, "v-%d", i), Timestamp: time.Now()}
		if mutate != nil {
			mutate(i, r)
		}
		recs = append(recs, r)
	}
	if err := b.client.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		b.t.Fatal(err)
	}
}

// readAll reads every record of a topic (read_committed).
func (b *broker) readAll(topic string) []*kgo.Record {
	b.t.Helper()
	topic = b.name(topic)
	ends, err := b.admin.ListEndOffsets(context.Background(), topic)
	if err != nil {
		b.t.Fatal(err)
	}
	want := map[int32]int64{}
	total := int64(0)
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
			total += o.Offset
		}
	})
	if total == 0 {
		return nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.seeds...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		b.t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			b.t.Fatalf("reading %s: %v (missing %v)", topic, ctx.Err(), want)
		}
		fs.EachRecord(func(r *kgo.Record) {
			out = append(out, r)
			if r.Offset+1 >= want[r.Partition] {
				delete(want, r.Partition)
			}
		})
	}
	return out
}

// committed returns the group's committed offset per topic (named as the test
// names it) and partition.
func (b *broker) committed(group string) map[string]map[int32]int64 {
	b.t.Helper()
	offs, err := b.admin.FetchOffsets(context.Background(), b.name(group))
	if err != nil {
		b.t.Fatal(err)
	}
	out := map[string]map[int32]int64{}
	offs.Each(func(o kadm.OffsetResponse) {
		topic := b.testName(o.Topic)
		if out[topic] == nil {
			out[topic] = map[int32]int64{}
		}
		out[topic][o.Partition] = o.At
	})
	return out
}

func sumCommitted(c map[string]map[int32]int64, topic string) int64 {
	var n int64
	for _, o := range c[topic] {
		n += o
	}
	return n
}

// testConfig is a valid config for topic "orders" with fast timings.
func testConfig(seeds []string) *workerconfig.Config {
	d := func(x time.Duration) metav1.Duration { return metav1.Duration{Duration: x} }
	return &workerconfig.Config{
		Pipeline: workerconfig.PipelineRef{Namespace: "test", Name: "orders"},
		Kafka:    workerconfig.Kafka{BootstrapServers: seeds},
		Source:   workerconfig.Source{Topic: "orders", ConsumerGroup: "test.orders", StartFrom: "Earliest"},
		Sink:     workerconfig.Sink{Log: &workerconfig.LogSink{Format: "JSON"}},
		Delivery: workerconfig.Delivery{
			Semantics:         "AtLeastOnce",
			RetryTopics:       []string{"orders.retry.1", "orders.retry.2", "orders.retry.3"},
			Backoff:           workerconfig.Backoff{Initial: d(50 * time.Millisecond), Multiplier: 2, Max: d(time.Second)},
			DeadLetterTopic:   "orders.dlq",
			ProcessingTimeout: d(5 * time.Second),
		},
		Consumer: workerconfig.Consumer{
			MaxPollRecords: 100, MaxPollInterval: d(20 * time.Second), SessionTimeout: d(3 * time.Second),
			HeartbeatInterval: d(300 * time.Millisecond), FetchMaxWait: d(50 * time.Millisecond), ShutdownTimeout: d(5 * time.Second),
		},
		CircuitBreaker: workerconfig.CircuitBreaker{FailureThreshold: 5, OpenDuration: d(time.Second)},
		RateLimit:      workerconfig.RateLimit{WarmupRecordsPerSecond: 100, WarmupDuration: d(0)},
		Startup:        workerconfig.Startup{MaxJitter: d(0)},
		Server:         workerconfig.Server{Port: 8080},
	}
}

var allTopics = []string{"orders", "orders.retry.1", "orders.retry.2", "orders.retry.3", "orders.dlq"}

// running is a worker running in the background.
type running struct {
	w      *Worker
	cancel context.CancelFunc
	done   chan error
	addr   string
}

func startWorker(t *testing.T, cfg *workerconfig.Config, snk sink.Sink) *running {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w, err := New(Options{
		Config: cfg, Sink: snk, Listener: ln,
		Logger:    slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		KafkaOpts: []kgo.Opt{kgo.MetadataMinAge(100 * time.Millisecond)},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{w: w, cancel: cancel, done: make(chan error, 1), addr: ln.Addr().String()}
	go func() { r.done <- w.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop sends the equivalent of SIGTERM and waits for a clean exit.
func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("worker stopped with %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("worker did not shut down within 20s")
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s", timeout, what)
}

// service is a real HTTP server standing in for a team's service: it records
// every request and answers with what respond says.
type service struct {
	srv     *httptest.Server
	mu      sync.Mutex
	calls   []call
	respond func(c call) int
}

type call struct {
	key   string // Idempotency-Key
	body  string
	at    time.Time
	trace string
}

func newService(t *testing.T, respond func(c call) int) *service {
	s := &service{respond: respond}
	s.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			return
		}
		body, _ := io.ReadAll(r.Body)
		c := call{key: r.Header.Get(sink.HeaderIdempotencyKey), body: string(body), at: time.Now(), trace: r.Header.Get("Traceparent")}
		s.mu.Lock()
		respond := s.respond
		s.mu.Unlock()
		code := respond(c)
		if code == http.StatusOK {
			s.mu.Lock()
			s.calls = append(s.calls, c)
			s.mu.Unlock()
		}
		rw.WriteHeader(code)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// accepted returns the accepted calls.
func (s *service) accepted() []call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]call(nil), s.calls...)
}

// acceptedBodies counts accepted calls per body.
func (s *service) acceptedBodies() map[string]int {
	out := map[string]int{}
	for _, c := range s.accepted() {
		out[c.body]++
	}
	return out
}

func ok(call) int { return http.StatusOK }

func httpConfig(seeds []string, url string) *workerconfig.Config {
	cfg := testConfig(seeds)
	cfg.Sink = workerconfig.Sink{HTTP: &workerconfig.HTTPSink{URL: url, Timeout: metav1.Duration{Duration: 2 * time.Second}}}
	return cfg
}

func headerMap(r *kgo.Record) map[string]string {
	m := map[string]string{}
	for _, h := range r.Headers {
		m[h.Key] = string(h.Value)
	}
	return m
}

var workerconfigIdempotencyKeyJSON = workerconfig.IdempotencyKey{JSONField: "order.id"}

// counterValue reads a metric (counter or gauge) from the worker's registry,
// selecting by one label (or none when label is "").
func counterValue(t *testing.T, w *Worker, name, label, value string) float64 {
	t.Helper()
	mfs, err := w.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					match = true
				}
			}
			if !match {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

func mustListen(tb testing.TB) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return ln
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// progress describes, per partition of topic, the group's committed offset
// against the end offset: whether a stuck test is waiting on a worker that
// stopped fetching or on records that are gone.
func (b *broker) progress(topic string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ends, err := b.admin.ListEndOffsets(ctx, b.name(topic))
	if err != nil {
		return "end offsets: " + err.Error()
	}
	committed, err := b.admin.FetchOffsets(ctx, b.group)
	if err != nil {
		return "committed offsets: " + err.Error()
	}
	var out []string
	ends.Each(func(o kadm.ListedOffset) {
		c, _ := committed.Lookup(o.Topic, o.Partition)
		out = append(out, fmt.Sprintf("%s[%d] committed %d of %d", o.Topic, o.Partition, c.At, o.Offset))
	})
	slices.Sort(out)
	return strings.Join(out, "; ")
}

// waitForDeadMembersToLeave waits until the test's group has no members left:
// the workers a crash loop SIGKILLed are gone. It works around a kfake defect
// (v0.0.0-20260918054303): a member killed while its JoinGroup was pending is
// kept forever when a live member completes that rebalance. Its join response
// can't be delivered, so kfake never starts its session timer, and the
// leader's SyncGroup cancels the timer that removes members that never synced;
// the dead member keeps its partitions and the test's last worker never gets
// them (real Kafka expires every member by its session timeout). With no live
// member the rebalance and sync timeouts do remove them, so the last worker
// starts once the group is empty. What the tests check is unchanged.
func (b *broker) waitForDeadMembersToLeave(t *testing.T, within time.Duration) {
	t.Helper()
	start := time.Now()
	eventually(t, within, "the SIGKILLed workers leave the group", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		groups, err := b.admin.DescribeGroups(ctx, b.group)
		if err != nil {
			return false
		}
		g, ok := groups[b.group]
		return ok && g.Err == nil && len(g.Members) == 0
	})
	t.Logf("the SIGKILLed workers left the group within %v", time.Since(start).Round(time.Millisecond))
}
