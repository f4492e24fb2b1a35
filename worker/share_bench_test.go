package worker

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/internal/kafka"
	"github.com/sluice-dev/sluice/internal/workerconfig"
)

// BenchmarkShareGroupPastThePartitions: records/s of 2 and 8 workers on a
// 2-partition topic, as a consumer group and as a share group, each worker
// with 8 records in flight at a downstream taking a uniform 0-20 ms per
// record (10 ms on average: 800 records/s per worker at most). A consumer
// group's third and later workers get no partition; a share group's do.
// Timed from the first sink call to the last acknowledgement, after every
// worker joined (and 2 s to settle). Both poll 4 × maxInFlight records, the
// default render writes.
//
//	go test ./worker -run '^$' -bench BenchmarkShareGroupPastThePartitions -benchtime 1x
func BenchmarkShareGroupPastThePartitions(b *testing.B) {
	const n, partitions, maxInFlight, latency = 4000, 2, 8, 20 * time.Millisecond
	for _, groupType := range []string{workerconfig.GroupTypeConsumer, workerconfig.GroupTypeShare} {
		for _, replicas := range []int{2, 8} {
			b.Run(fmt.Sprintf("%s/%d-workers", groupType, replicas), func(b *testing.B) {
				var total time.Duration
				for b.Loop() {
					total += runGroupBench(b, groupType, replicas, n, partitions, maxInFlight, latency)
				}
				secs := total.Seconds() / float64(b.N)
				b.ReportMetric(secs, "s")
				b.ReportMetric(float64(n)/secs, "records/s")
				b.ReportMetric(float64(replicas)*maxInFlight/(latency/2).Seconds(), "ceiling-records/s")
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
	cfg := concurrentConfig(benchConfig(seeds, nextGroup()), workerconfig.OrderingUnordered, maxInFlight)
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

	snk := &latencySink{max: latency, n: int64(n), done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	var workers []*Worker
	stopped := make(chan error, replicas)
	for range replicas {
		w, err := New(Options{Config: cfg, Sink: snk, Listener: mustListen(b),
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
	case <-snk.done:
	case <-time.After(2 * time.Minute):
		b.Fatalf("%d of %d records acknowledged in 2 min", snk.acked.Load(), n)
	}
	cancel()
	for range replicas {
		if err := <-stopped; err != nil {
			b.Fatal(err)
		}
	}
	return time.Duration(snk.last.Load() - snk.first.Load())
}
