package worker

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/internal/kafka"
	"github.com/sluice-dev/sluice/internal/workerconfig"
)

// BenchmarkShareGroupPastThePartitions: records/s of 1, 2, 4 and 8 workers on
// a 2-partition topic, as a consumer group and as a share group, each worker
// with the http sink and 8 records in flight at a local service answering
// each request after 50 ms (160 records/s per worker at most). A consumer
// group's third and later workers get no partition; a share group's do.
// Timed from the first request to the last answer, after every worker joined
// (and 2 s to settle). Both poll 4 × maxInFlight records, the default render
// writes.
//
//	go test ./worker -run '^$' -bench BenchmarkShareGroupPastThePartitions -benchtime 1x
func BenchmarkShareGroupPastThePartitions(b *testing.B) {
	const n, partitions, maxInFlight, latency = 2000, 2, 8, 50 * time.Millisecond
	for _, groupType := range []string{workerconfig.GroupTypeConsumer, workerconfig.GroupTypeShare} {
		for _, replicas := range []int{1, 2, 4, 8} {
			b.Run(fmt.Sprintf("%s/%d-workers", groupType, replicas), func(b *testing.B) {
				var total time.Duration
				for b.Loop() {
					total += runGroupBench(b, groupType, replicas, n, partitions, maxInFlight, latency)
				}
				secs := total.Seconds() / float64(b.N)
				b.ReportMetric(secs, "s")
				b.ReportMetric(float64(n)/secs, "records/s")
				b.ReportMetric(float64(replicas)*maxInFlight/latency.Seconds(), "ceiling-records/s")
			})
		}
	}
}

func runGroupBench(b *testing.B, groupType string, replicas, n int, partitions int32, maxInFlight int32, latency time.Duration) time.Duration {
	b.Helper()
	lock := 15 * time.Second
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, "orders"), kfake.SeedTopics(1, "orders.dlq"),
		kfake.GroupMinSessionTimeout(100*time.Millisecond), kfake.BrokerConfigs(map[string]string{
			"group.share.heartbeat.interval.ms":   "200",
			"group.share.record.lock.duration.ms": strconv.FormatInt(lock.Milliseconds(), 10),
		}))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	seeds := c.ListenAddrs()
	svc := newTimedService(n, latency)
	defer svc.srv.Close()
	cfg := concurrentConfig(benchConfig(seeds, nextGroup()), workerconfig.OrderingUnordered, maxInFlight)
	cfg.Sink = workerconfig.Sink{HTTP: &workerconfig.HTTPSink{URL: svc.srv.URL, Timeout: metav1.Duration{Duration: 5 * time.Second}}}
	cfg.RateLimit.WarmupRecordsPerSecond = 0
	if groupType == workerconfig.GroupTypeShare {
		cfg.Source.GroupType = groupType
		cfg.Source.Share = &workerconfig.Share{RetryAttempts: 2, DeliveryCountLimit: 6}
		cfg.Source.Share.RecordLockDuration.Duration = lock
		cfg.Delivery.RetryTopics = nil
		cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
		if err != nil {
			b.Fatal(err)
		}
		_, err = kafka.EnsureShareGroup(context.Background(), cl, cfg.Source.ConsumerGroup, kafka.ShareGroupSettings{StartFrom: "Earliest", RecordLock: lock, DeliveryCountLimit: 6})
		cl.Close()
		if err != nil {
			b.Fatal(err)
		}
	} else {
		cfg.Delivery.RetryTopics = nil
	}

	ctx, cancel := context.WithCancel(context.Background())
	var workers []*Worker
	stopped := make(chan error, replicas)
	for range replicas {
		w, err := New(Options{Config: cfg, Listener: mustListen(b),
			Logger: discardLogger(), KafkaOpts: []kgo.Opt{kgo.MetadataMinAge(100 * time.Millisecond)}})
		if err != nil {
			b.Fatal(err)
		}
		workers = append(workers, w)
		go func() { stopped <- w.Run(ctx) }()
	}
	deadline := time.Now().Add(30 * time.Second)
	for joined := 0; joined < replicas; {
		joined = 0
		for _, w := range workers {
			if w.joined.Load() {
				joined++
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d workers joined in 30 s", joined, replicas)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)

	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: "orders", Key: fmt.Appendf(nil, "k-%d", i), Value: make([]byte, 100)}
	}
	produceRecords(b, seeds, recs)
	select {
	case <-svc.done:
	case <-time.After(2 * time.Minute):
		b.Fatalf("%d of %d records acknowledged in 2 min", svc.answered.Load(), n)
	}
	cancel()
	for range replicas {
		if err := <-stopped; err != nil {
			b.Fatal(err)
		}
	}
	return time.Duration(svc.last.Load() - svc.first.Load())
}

// timedService is a local HTTP downstream answering every request after
// latency; it notes the first request and when the n-th answer went out.
type timedService struct {
	srv         *httptest.Server
	answered    atomic.Int64
	first, last atomic.Int64 // unix nanos
	done        chan struct{}
	once        sync.Once
}

func newTimedService(n int, latency time.Duration) *timedService {
	s := &timedService{done: make(chan struct{})}
	s.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			return
		}
		s.first.CompareAndSwap(0, time.Now().UnixNano())
		_, _ = io.Copy(io.Discard, r.Body)
		time.Sleep(latency)
		rw.WriteHeader(http.StatusOK)
		if s.answered.Add(1) >= int64(n) {
			s.once.Do(func() { s.last.Store(time.Now().UnixNano()); close(s.done) })
		}
	}))
	return s
}
