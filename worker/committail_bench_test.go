package worker

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-dev/sluice/internal/testkafka"
	"github.com/sluice-dev/sluice/worker/sink"
)

// lastAckSink notes when the sink last acknowledged a record.
type lastAckSink struct {
	sink.Sink
	last atomic.Int64 // UnixNano
	acks atomic.Int64
}

func (s *lastAckSink) Write(ctx context.Context, recs []*sink.Record) []error {
	errs := s.Sink.Write(ctx, recs)
	s.acks.Add(int64(len(recs)))
	s.last.Store(time.Now().UnixNano())
	return errs
}

// BenchmarkCommitTail measures the commit tail: after a burst, the time from
// the sink's last acknowledgement to the OffsetCommit that covers it reaching
// the broker (seen by a kfake control). Each op is one burst of 2,000 records
// over 6 partitions into a running, caught-up worker; the median and the worst
// op are reported. Target: <= 100 ms.
//
//	go test ./worker -run '^$' -bench CommitTail -benchtime 20x
func BenchmarkCommitTail(b *testing.B) {
	testkafka.FakeOnly(b, "observes commits with a kfake control")
	c, seeds := backlog(b, 0)
	defer c.Close()
	cfg := benchConfig(seeds, nextGroup())
	snk := &lastAckSink{Sink: discardSink{}}

	// OffsetCommit v10+ names topics by ID.
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		b.Fatal(err)
	}
	topics, err := kadm.NewClient(cl).ListTopics(context.Background(), "orders")
	cl.Close()
	if err != nil || topics["orders"].Err != nil {
		b.Fatalf("list topics: %v", err)
	}
	ordersID := topics["orders"].ID

	var mu sync.Mutex
	var want int64 // the sum of the committed offsets once the burst is committed
	var reached chan time.Time
	committed := map[int32]int64{} // the last commit per source partition
	c.ControlKey(int16(kmsg.OffsetCommit), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		r := req.(*kmsg.OffsetCommitRequest)
		mu.Lock()
		defer mu.Unlock()
		for _, t := range r.Topics {
			if t.Topic != "orders" && t.TopicID != ordersID {
				continue
			}
			for _, p := range t.Partitions {
				committed[p.Partition] = p.Offset
			}
		}
		var sum int64
		for _, o := range committed {
			sum += o
		}
		if reached != nil && sum >= want {
			select {
			case reached <- time.Now():
			default:
			}
			reached = nil
		}
		return nil, nil, false
	})

	w, err := New(Options{Config: cfg, Sink: snk, Listener: mustListen(b), Logger: discardLogger(),
		KafkaOpts: []kgo.Opt{kgo.MetadataMinAge(100 * time.Millisecond)}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()
	for !w.joined.Load() {
		time.Sleep(10 * time.Millisecond)
	}

	const burst = 2000
	var tails []time.Duration
	var produced int64
	b.ResetTimer()
	for range b.N {
		// A commit offset counts per partition; the sum of the committed
		// offsets reaches the produced count when all of it is committed.
		mu.Lock()
		produced += burst
		covered := make(chan time.Time, 1)
		want, reached = produced, covered
		mu.Unlock()
		produceBacklog(b, seeds, "orders", burst)
		for snk.acks.Load() < produced {
			time.Sleep(time.Millisecond)
		}
		var at time.Time
		select {
		case at = <-covered:
		case <-time.After(10 * time.Second):
			b.Fatal("no commit covered the burst within 10 s")
		}
		tails = append(tails, max(0, at.Sub(time.Unix(0, snk.last.Load()))))
	}
	b.StopTimer()
	slices.Sort(tails)
	b.ReportMetric(float64(tails[len(tails)/2].Microseconds())/1000, "tail-median-ms")
	b.ReportMetric(float64(tails[len(tails)-1].Microseconds())/1000, "tail-max-ms")
}
