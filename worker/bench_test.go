package worker

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/sluice-dev/sluice/internal/benchvalues"
	"github.com/sluice-dev/sluice/internal/procstat"
	"github.com/sluice-dev/sluice/internal/testkafka"
	"github.com/sluice-dev/sluice/internal/workerconfig"
	"github.com/sluice-dev/sluice/worker/sink"
)

// The throughput benchmarks compare the worker, with every safety feature on
// (commit tracker, breaker, rate limiter past its warm-up, metrics, routing),
// against a bare franz-go consume-and-commit loop with the same poll settings,
// on the same broker (kfake, or the real cluster in $SLUICE_TEST_KAFKA), in the
// same run. Each op drains a backlog of benchRecords records of about 100 bytes
// over 6 partitions (BenchmarkThroughput: one backlog per value kind, random
// bytes, JSON documents and ASCII text); records/s is reported.
//
//	go test ./worker -run '^$' -bench BenchmarkThroughput -benchtime 5x
const (
	benchRecords    = 200_000
	benchPartitions = 6
	benchMaxPoll    = 500
)

// backlog starts a kfake holding n records in topic "orders" (and empty topics
// extra). The kfake-only benchmarks use it; the throughput benchmarks use
// benchBacklog, which runs on either broker.
func backlog(tb testing.TB, n int, extra ...string) (*kfake.Cluster, []string) {
	tb.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(benchPartitions, append(extra, allTopics...)...),
		kfake.GroupMinSessionTimeout(100*time.Millisecond))
	if err != nil {
		tb.Fatal(err)
	}
	produceBacklog(tb, c.ListenAddrs(), "orders", n)
	return c, c.ListenAddrs()
}

// benchTopics is a backlog on the broker the benchmark runs against: kfake, or
// the real cluster in $SLUICE_TEST_KAFKA (with unique topic names, since a real
// cluster is shared).
type benchTopics struct {
	seeds       []string
	source, dlq string
	retries     []string
}

// benchBacklog creates the source, retry and dead-letter topics (6 partitions)
// and produces n records to the source.
func benchBacklog(tb testing.TB, n int) benchTopics {
	tb.Helper()
	k := testkafka.New(tb, kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(100*time.Millisecond))
	base := "orders"
	if k.Real() {
		base = testkafka.UniqueTopic(tb, "bench")
	}
	t := benchTopics{seeds: k.Brokers, source: base, dlq: base + ".dlq",
		retries: []string{base + ".retry.1", base + ".retry.2", base + ".retry.3"}}
	k.CreateTopics(tb, benchPartitions, 0, nil, append([]string{t.source, t.dlq}, t.retries...)...)
	produceBacklog(tb, t.seeds, t.source, n)
	return t
}

// benchBacklogOfKinds is benchBacklog with one source topic per value kind
// (orders.random, orders.json, orders.ascii), each holding n records of its
// kind, on one broker; the retry and dead-letter topics are shared.
func benchBacklogOfKinds(tb testing.TB, n int) map[string]benchTopics {
	tb.Helper()
	k := testkafka.New(tb, kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(100*time.Millisecond))
	base := "orders"
	if k.Real() {
		base = testkafka.UniqueTopic(tb, "bench")
	}
	shared := benchTopics{seeds: k.Brokers, dlq: base + ".dlq",
		retries: []string{base + ".retry.1", base + ".retry.2", base + ".retry.3"}}
	topics := append([]string{shared.dlq}, shared.retries...)
	for _, kind := range benchvalues.Kinds {
		topics = append(topics, base+"."+kind)
	}
	k.CreateTopics(tb, benchPartitions, 0, nil, topics...)
	byKind := map[string]benchTopics{}
	for _, kind := range benchvalues.Kinds {
		t := shared
		t.source = base + "." + kind
		values := benchvalues.Make(kind, 1000)
		produceValues(tb, t.seeds, t.source, n, func(i int) []byte { return values[i%len(values)] })
		byKind[kind] = t
	}
	return byKind
}

// config is benchConfig on these topics.
func (t benchTopics) config(group string) *workerconfig.Config {
	cfg := benchConfig(t.seeds, group)
	cfg.Source.Topic, cfg.Delivery.RetryTopics, cfg.Delivery.DeadLetterTopic = t.source, t.retries, t.dlq
	return cfg
}

func produceBacklog(tb testing.TB, seeds []string, topic string, n int) {
	tb.Helper()
	value := []byte(strings.Repeat("x", 100))
	produceValues(tb, seeds, topic, n, func(int) []byte { return value })
}

// produceValues produces n records to topic, record i with key i (decimal) and
// value(i).
func produceValues(tb testing.TB, seeds []string, topic string, n int, value func(i int) []byte) {
	tb.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(100_000))
	if err != nil {
		tb.Fatal(err)
	}
	defer cl.Close()
	var wg sync.WaitGroup
	var failed atomic.Value
	wg.Add(n)
	for i := range n {
		cl.Produce(context.Background(), &kgo.Record{Topic: topic, Key: []byte(strconv.Itoa(i)), Value: value(i)}, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Store(err)
			}
			wg.Done()
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		tb.Fatal(err)
	}
}

// bareLoop consumes n records like a minimal franz-go application would: poll,
// hand each partition's records to a goroutine running handle, commit, repeat.
func bareLoop(tb testing.TB, seeds []string, topic, group string, n int, handle func([]*kgo.Record)) {
	tb.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.DisableAutoCommit(), kgo.BlockRebalanceOnPoll(), kgo.FetchMaxWait(50*time.Millisecond),
		kgo.SessionTimeout(3*time.Second), kgo.HeartbeatInterval(300*time.Millisecond))
	if err != nil {
		tb.Fatal(err)
	}
	defer cl.Close()
	seen := 0
	for seen < n {
		fs := cl.PollRecords(context.Background(), benchMaxPoll)
		var wg sync.WaitGroup
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			seen += len(p.Records)
			if handle != nil {
				wg.Go(func() { handle(p.Records) })
			}
		})
		wg.Wait()
		if err := cl.CommitUncommittedOffsets(context.Background()); err != nil {
			tb.Fatal(err)
		}
		cl.AllowRebalance()
	}
}

// eachRecord makes a bare-loop handler out of a per-record function.
func eachRecord(fn func(*kgo.Record)) func([]*kgo.Record) {
	return func(recs []*kgo.Record) {
		for _, r := range recs {
			fn(r)
		}
	}
}

// bareLogSink is what a minimal application logging its records with Sluice's
// log sink does: one Write per partition batch.
func bareLogSink(snk sink.Sink) func([]*kgo.Record) {
	return func(recs []*kgo.Record) {
		out := make([]sink.Record, len(recs))
		ptrs := make([]*sink.Record, len(recs))
		for i, r := range recs {
			out[i] = sink.Record{Rec: r, OriginalTimestamp: r.Timestamp, Origin: sink.Origin{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}}
			ptrs[i] = &out[i]
		}
		snk.Write(context.Background(), ptrs)
	}
}

// discardSink acknowledges every record and does nothing else: with it, the
// worker's throughput measures its own per-record cost.
type discardSink struct{}

func (discardSink) Write(_ context.Context, recs []*sink.Record) []error {
	return make([]error, len(recs))
}
func (discardSink) MaxBatch() int              { return 0 }
func (discardSink) Ping(context.Context) error { return nil }
func (discardSink) Close() error               { return nil }

// countingSink wraps a sink and signals when n records were acknowledged.
type countingSink struct {
	sink.Sink
	n    int64
	done chan struct{}
	seen atomic.Int64
}

func (c *countingSink) Write(ctx context.Context, recs []*sink.Record) []error {
	errs := c.Sink.Write(ctx, recs)
	ok := 0
	for _, e := range errs {
		if e == nil {
			ok++
		}
	}
	if c.seen.Add(int64(ok)) == c.n {
		close(c.done)
	}
	return errs
}

func benchConfig(seeds []string, group string) *workerconfig.Config {
	cfg := testConfig(seeds)
	cfg.Source.ConsumerGroup = group
	cfg.Consumer.MaxPollRecords = benchMaxPoll
	cfg.RateLimit = workerconfig.RateLimit{WarmupRecordsPerSecond: 100, WarmupDuration: metav1.Duration{}}
	return cfg
}

// runWorker drains n records through the worker with snk and returns the time.
func runWorker(tb testing.TB, cfg *workerconfig.Config, snk sink.Sink, n int) time.Duration {
	tb.Helper()
	cs := &countingSink{Sink: snk, n: int64(n), done: make(chan struct{})}
	w, err := New(Options{Config: cfg, Sink: cs, Listener: mustListen(tb),
		Logger: discardLogger(), KafkaOpts: []kgo.Opt{kgo.MetadataMinAge(100 * time.Millisecond)}})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- w.Run(ctx) }()
	select {
	case <-cs.done:
	case err := <-done:
		tb.Fatalf("worker stopped early: %v", err)
	}
	took := time.Since(start)
	cancel()
	if err := <-done; err != nil {
		tb.Fatal(err)
	}
	return took
}

var groupSeq atomic.Int32

func nextGroup() string { return fmt.Sprintf("bench-%d", groupSeq.Add(1)) }

// BenchmarkThroughput pairs each worker run with a bare loop, run alternately
// so that both see the same machine:
//
//   - log-sink: the comparison, the worker writing every record with
//     the log sink (default format, JSON) against a bare loop that does
//     nothing with its records;
//   - log-sink-both: the bare loop writes its records with the log sink too;
//   - discard-sink: the worker with a sink that only acknowledges, against the
//     bare loop doing nothing: the cost of the worker itself.
//
// Each pair runs on each kind of value (sub-benchmarks random, json, ascii:
// see internal/benchvalues), each kind from its own topic. Each reports both rates and
// their ratio, and the CPU time the test process (broker, clients, worker)
// spent per record in each, and their ratio: on a loaded machine the CPU
// times vary less than the rates.
//
//	go test ./worker -run '^$' -bench 'BenchmarkThroughput$' -benchtime 5x
func BenchmarkThroughput(b *testing.B) {
	byKind := benchBacklogOfKinds(b, benchRecords)
	pair := func(t benchTopics, handle func([]*kgo.Record), snk sink.Sink) func(*testing.B) {
		return func(b *testing.B) {
			var bare, worker, bareCPU, workerCPU time.Duration
			for range b.N {
				start, cpu := time.Now(), processCPU(b)
				bareLoop(b, t.seeds, t.source, nextGroup(), benchRecords, handle)
				bare += time.Since(start)
				cpu2 := processCPU(b)
				bareCPU += cpu2 - cpu
				worker += runWorker(b, t.config(nextGroup()), snk, benchRecords)
				workerCPU += processCPU(b) - cpu2
			}
			reportPair(b, benchRecords, bare, worker)
			records := float64(benchRecords) * float64(b.N)
			b.ReportMetric(float64(bareCPU.Nanoseconds())/records, "bare-cpu-ns/record")
			b.ReportMetric(float64(workerCPU.Nanoseconds())/records, "worker-cpu-ns/record")
			b.ReportMetric(bareCPU.Seconds()/workerCPU.Seconds(), "cpu-ratio")
		}
	}
	for _, p := range []struct {
		name   string
		handle func([]*kgo.Record)
		sink   sink.Sink
	}{
		{"log-sink", nil, sink.NewLog(io.Discard, "JSON")},
		{"log-sink-both", bareLogSink(sink.NewLog(io.Discard, "JSON")), sink.NewLog(io.Discard, "JSON")},
		{"discard-sink", nil, discardSink{}},
	} {
		b.Run(p.name, func(b *testing.B) {
			for _, kind := range benchvalues.Kinds {
				b.Run(kind, pair(byKind[kind], p.handle, p.sink))
			}
		})
	}
}

// processCPU is the CPU time (user and system) the test process used so far.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportPair reports the records/s of the bare loop and of the worker over
// b.N runs of n records each, and the worker's share of the bare loop's rate.
func reportPair(b *testing.B, n int, bare, worker time.Duration) {
	records := float64(n) * float64(b.N)
	b.ReportMetric(records/bare.Seconds(), "bare-records/s")
	b.ReportMetric(records/worker.Seconds(), "worker-records/s")
	b.ReportMetric(bare.Seconds()/worker.Seconds(), "ratio")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkThroughputHTTP: the same, with every record POSTed to a local HTTP
// server; the bare loop POSTs too (one goroutine per partition, in order).
//
//	go test ./worker -run '^$' -bench BenchmarkThroughputHTTP -benchtime 3x
func BenchmarkThroughputHTTP(b *testing.B) {
	const n = 20_000
	t := benchBacklog(b, n)
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	post := eachRecord(func(r *kgo.Record) {
		resp, err := client.Post(srv.URL, "application/octet-stream", strings.NewReader(string(r.Value)))
		if err != nil {
			b.Error(err)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	})
	var bare, worker time.Duration
	for range b.N {
		start := time.Now()
		bareLoop(b, t.seeds, t.source, nextGroup(), n, post)
		bare += time.Since(start)
		worker += runWorker(b, t.config(nextGroup()), sink.NewHTTP(srv.URL, 5*time.Second), n)
	}
	reportPair(b, n, bare, worker)
}

// BenchmarkWorkerRSSUnderBacklog runs the real worker binary (log sink to
// /dev/null) against a backlog of one million 100-byte records and reports its
// peak resident memory (VmHWM) and throughput. Target: below 150 MiB.
//
//	go test ./worker -run '^$' -bench BenchmarkWorkerRSSUnderBacklog -benchtime 1x
func BenchmarkWorkerRSSUnderBacklog(b *testing.B) {
	const n = 1_000_000
	bin, err := buildOnce()
	if err != nil {
		b.Fatal(err)
	}
	c, seeds := backlog(b, n)
	defer c.Close()
	for _, mode := range []struct {
		name string
		set  func(*workerconfig.Config)
	}{
		{"Partition", func(*workerconfig.Config) {}},
		// The bound: Key order with 1,024 records in flight (polls
		// of 4,096, and refills) stays under 150 MiB.
		{"Key-maxInFlight1024", func(cfg *workerconfig.Config) { concurrentConfig(cfg, workerconfig.OrderingKey, 1024) }},
	} {
		b.Run(mode.name, func(b *testing.B) {
			for range b.N {
				cfg := benchConfig(seeds, nextGroup())
				mode.set(cfg)
				peak, took := runWorkerBinary(b, bin, cfg, n)
				b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MiB")
				b.ReportMetric(float64(n)/took.Seconds(), "records/s")
			}
		})
	}
}

// runWorkerBinary runs the worker binary with cfg until it has processed n
// records and returns its peak RSS and how long that took.
func runWorkerBinary(b *testing.B, bin string, cfg *workerconfig.Config, n int) (int64, time.Duration) {
	b.Helper()
	cfg.Server.Port = freePort(b)
	data, err := yaml.Marshal(cfg)
	if err != nil {
		b.Fatal(err)
	}
	file := filepath.Join(b.TempDir(), "worker.yaml")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", file)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	metrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", cfg.Server.Port)
	processed := fmt.Sprintf(`%s{outcome="processed",pipeline="orders"} `, metricRecords)
	for sampleValue(scrapeAll(metrics), processed) < float64(n) {
		if time.Since(start) > 5*time.Minute {
			_ = cmd.Process.Kill()
			b.Fatal("the worker did not drain the backlog in 5 minutes")
		}
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(start)
	peak := peakRSS(b, cmd.Process.Pid)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	return peak, took
}

func scrapeAll(url string) string {
	resp, err := http.Get(url)
	if err != nil {
		return ""
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// sampleValue finds the sample line starting with prefix in a Prometheus text
// exposition and parses its value (which may be printed as 1e+06).
func sampleValue(body, prefix string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return 0
}

// peakRSS reads VmHWM (peak resident set size) of a process, in bytes.
func peakRSS(tb testing.TB, pid int) int64 {
	n, err := procstat.PeakRSS(pid)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// BenchmarkThroughputExactlyOnce compares ExactlyOnce with AtLeastOnce delivery
// for the two sinks that have both, in the same run on the same kfake backlog:
// the kafka sink (Kafka transactions vs an idempotent producer) and the
// postgres sink (rows and offsets in one transaction, fenced, vs one INSERT ...
// ON CONFLICT DO NOTHING per batch; the same table, with a primary key). Each op
// drains the backlog with a fresh group (and, for postgres, an empty table).
//
//	go test ./worker -run '^$' -bench BenchmarkThroughputExactlyOnce -benchtime 3x -count 2
func BenchmarkThroughputExactlyOnce(b *testing.B) {
	const n = 100_000
	_, seeds := backlog(b, n, "orders-out")
	dsn, conn := postgresDB(b)
	if _, err := conn.Exec(context.Background(), "CREATE TABLE bench (id text PRIMARY KEY, payload text NOT NULL)"); err != nil {
		b.Fatal(err)
	}
	dsnFile := filepath.Join(b.TempDir(), "dsn")
	if err := os.WriteFile(dsnFile, []byte(dsn), 0o600); err != nil {
		b.Fatal(err)
	}
	for _, sinkName := range []string{"kafka", "postgres"} {
		for _, semantics := range []string{"AtLeastOnce", "ExactlyOnce"} {
			b.Run(sinkName+"-sink/"+semantics, func(b *testing.B) {
				var total time.Duration
				for range b.N {
					cfg := benchConfig(seeds, nextGroup())
					cfg.Delivery.Semantics = semantics
					if sinkName == "kafka" {
						cfg.Sink = workerconfig.Sink{Kafka: &workerconfig.KafkaSink{Topic: "orders-out"}}
					} else {
						if _, err := conn.Exec(context.Background(), "TRUNCATE bench"); err != nil {
							b.Fatal(err)
						}
						cfg.Sink = workerconfig.Sink{Postgres: &workerconfig.PostgresSink{DSNFile: dsnFile, Table: "bench", KeyColumn: "id", PayloadColumn: "payload"}}
					}
					total += runWorkerUntilProcessed(b, cfg, n)
				}
				b.ReportMetric(float64(n)*float64(b.N)/total.Seconds(), "records/s")
			})
		}
	}
}

// runWorkerUntilProcessed runs a worker with the sink its config names until
// it counted n records processed, and returns the time that took.
func runWorkerUntilProcessed(tb testing.TB, cfg *workerconfig.Config, n int) time.Duration {
	tb.Helper()
	w, err := New(Options{Config: cfg, Listener: mustListen(tb), Logger: discardLogger(),
		KafkaOpts: []kgo.Opt{kgo.MetadataMinAge(100 * time.Millisecond)}})
	if err != nil {
		tb.Fatal(err)
	}
	processed := func() float64 {
		mfs, _ := w.Registry().Gather()
		for _, mf := range mfs {
			if mf.GetName() != metricRecords {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "outcome" && l.GetValue() == outcomeProcessed {
						return m.GetCounter().GetValue()
					}
				}
			}
		}
		return 0
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- w.Run(ctx) }()
	for processed() < float64(n) {
		select {
		case err := <-done:
			tb.Fatalf("worker stopped early: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	took := time.Since(start)
	cancel()
	if err := <-done; err != nil {
		tb.Fatal(err)
	}
	return took
}
