package worker

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/internal/workerconfig"
	"github.com/sluice-dev/sluice/worker/sink"
)

// latencySink acknowledges each record after a uniform 0-max latency, one
// record per call (like the http sink), and remembers when the first call
// started and the n-th record was acknowledged.
type latencySink struct {
	max         time.Duration
	n           int64
	acked       atomic.Int64
	first, last atomic.Int64 // unix nanos
	done        chan struct{}
	once        sync.Once
}

func (s *latencySink) Write(_ context.Context, recs []*sink.Record) []error {
	s.first.CompareAndSwap(0, time.Now().UnixNano())
	time.Sleep(rand.N(s.max + 1))
	if s.acked.Add(int64(len(recs))) >= s.n {
		s.once.Do(func() { s.last.Store(time.Now().UnixNano()); close(s.done) })
	}
	return make([]error, len(recs))
}
func (s *latencySink) MaxBatch() int              { return 1 }
func (s *latencySink) Ping(context.Context) error { return nil }
func (s *latencySink) Close() error               { return nil }

// BenchmarkOrdering reproduces Parallel Consumer's published comparison: one
// partition, 10,000 records, a downstream taking a uniform 0-5 ms per record;
// the time from the first call to the last acknowledgement, in Partition
// order, Key order (1,000 keys, uniform or Zipf-distributed) and Unordered,
// with maxInFlight 256. floor-s is records × mean latency ÷ the records that
// may be in flight (1 in Partition order); in Key order key-floor-s is the
// hottest key's records × mean latency, since a key goes one record at a time.
//
//	go test ./worker -run '^$' -bench BenchmarkOrdering -benchtime 1x
func BenchmarkOrdering(b *testing.B) {
	const n, keys, maxInFlight, latency = 10_000, 1000, 256, 5 * time.Millisecond
	zipf := rand.NewZipf(rand.New(rand.NewPCG(1, 2)), 1.1, 1, keys-1)
	for _, mode := range []struct {
		name     string
		ordering string
		key      func(i int) uint64
	}{
		{"Partition", workerconfig.OrderingPartition, func(i int) uint64 { return uint64(i % keys) }},
		{"Key-1000-uniform", workerconfig.OrderingKey, func(i int) uint64 { return uint64(i % keys) }},
		{"Key-1000-zipf", workerconfig.OrderingKey, func(int) uint64 { return zipf.Uint64() }},
		{"Unordered", workerconfig.OrderingUnordered, func(i int) uint64 { return uint64(i % keys) }},
	} {
		b.Run(mode.name, func(b *testing.B) {
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, allTopics...), kfake.GroupMinSessionTimeout(100*time.Millisecond))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			seeds := c.ListenAddrs()
			recs := make([]*kgo.Record, n)
			hottest := map[uint64]int{}
			for i := range recs {
				k := mode.key(i)
				hottest[k]++
				recs[i] = &kgo.Record{Topic: "orders", Key: fmt.Appendf(nil, "k-%d", k), Value: make([]byte, 100)}
			}
			produceRecords(b, seeds, recs)
			var total time.Duration
			for b.Loop() {
				cfg := benchConfig(seeds, nextGroup())
				inFlight := 1
				if mode.ordering != workerconfig.OrderingPartition {
					cfg = concurrentConfig(cfg, mode.ordering, maxInFlight)
					inFlight = maxInFlight
				}
				snk := &latencySink{max: latency, n: n, done: make(chan struct{})}
				runUntil(b, cfg, snk, snk.done)
				total += time.Duration(snk.last.Load() - snk.first.Load())
				b.ReportMetric(float64(n)*(latency/2).Seconds()/float64(inFlight), "floor-s")
			}
			b.ReportMetric(total.Seconds()/float64(b.N), "s")
			most := 0
			for _, c := range hottest {
				most = max(most, c)
			}
			b.ReportMetric(float64(most), "hottest-key-records")
			if mode.ordering == workerconfig.OrderingKey {
				// One key's records go one at a time: its share is a floor too.
				b.ReportMetric(float64(most)*(latency/2).Seconds(), "key-floor-s")
			}
		})
	}
}

func produceRecords(tb testing.TB, seeds []string, recs []*kgo.Record) {
	tb.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		tb.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		tb.Fatal(err)
	}
}

// runUntil runs the worker with snk until done closes.
func runUntil(tb testing.TB, cfg *workerconfig.Config, snk sink.Sink, done <-chan struct{}) {
	tb.Helper()
	w, err := New(Options{Config: cfg, Sink: snk, Listener: mustListen(tb),
		Logger: discardLogger(), KafkaOpts: []kgo.Opt{kgo.MetadataMinAge(100 * time.Millisecond)}})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- w.Run(ctx) }()
	select {
	case <-done:
	case err := <-stopped:
		tb.Fatalf("worker stopped early: %v", err)
	}
	cancel()
	if err := <-stopped; err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkOrderingHTTP is one worker and the http sink against a local
// service answering every request after 20 ms, on 12 partitions of distinct
// keys: records/s in Partition order (at most one request per partition at
// once: 12 / 20 ms = 600/s) against Key order with maxInFlight 256 (at most
// 256 / 20 ms = 12,800/s; the target is 80 % of that).
//
//	go test ./worker -run '^$' -bench BenchmarkOrderingHTTP -benchtime 1x
func BenchmarkOrderingHTTP(b *testing.B) {
	const partitions, latency, maxInFlight = 12, 20 * time.Millisecond, 256
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		time.Sleep(latency)
	}))
	defer srv.Close()
	for _, mode := range []struct {
		ordering string
		n        int
	}{
		{workerconfig.OrderingPartition, 12_000},
		{workerconfig.OrderingKey, 100_000},
	} {
		b.Run(mode.ordering, func(b *testing.B) {
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, allTopics...), kfake.GroupMinSessionTimeout(100*time.Millisecond))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			seeds := c.ListenAddrs()
			produceBacklog(b, seeds, "orders", mode.n)
			var took time.Duration
			for b.Loop() {
				cfg := benchConfig(seeds, nextGroup())
				cfg.Sink = workerconfig.Sink{HTTP: &workerconfig.HTTPSink{URL: srv.URL, Timeout: metav1.Duration{Duration: 5 * time.Second}}}
				if mode.ordering != workerconfig.OrderingPartition {
					cfg = concurrentConfig(cfg, mode.ordering, maxInFlight)
				}
				snk, err := openSink(context.Background(), cfg, nil) // as the worker builds it
				if err != nil {
					b.Fatal(err)
				}
				took += runWorker(b, cfg, snk, mode.n)
			}
			b.ReportMetric(float64(mode.n)*float64(b.N)/took.Seconds(), "records/s")
		})
	}
	// The ceiling on this machine: maxInFlight goroutines calling the same
	// http sink back to back, no Kafka, no worker. The 20 ms are a floor per
	// call; the sleep's overshoot and the HTTP round trip come on top.
	b.Run("bare-calls", func(b *testing.B) {
		const n = 100_000
		cfg := benchConfig(nil, "bare")
		cfg.Sink = workerconfig.Sink{HTTP: &workerconfig.HTTPSink{URL: srv.URL, Timeout: metav1.Duration{Duration: 5 * time.Second}}}
		cfg = concurrentConfig(cfg, workerconfig.OrderingUnordered, maxInFlight)
		snk, err := openSink(context.Background(), cfg, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = snk.Close() }()
		var took time.Duration
		for b.Loop() {
			var left atomic.Int64
			left.Store(n)
			start := time.Now()
			var wg sync.WaitGroup
			for range maxInFlight {
				wg.Go(func() {
					rec := &sink.Record{Rec: &kgo.Record{Topic: "orders", Value: make([]byte, 100)}, ConfiguredKey: "k"}
					for left.Add(-1) >= 0 {
						if errs := snk.Write(context.Background(), []*sink.Record{rec}); errs[0] != nil {
							b.Error(errs[0])
							return
						}
					}
				})
			}
			wg.Wait()
			took += time.Since(start)
		}
		b.ReportMetric(float64(n)*float64(b.N)/took.Seconds(), "records/s")
	})
}
