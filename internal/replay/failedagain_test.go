package replay

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/internal/testkafka"
	"github.com/sluice-dev/sluice/worker/failure"
)

// TestFailedAgainCountsTheReplaysCopiesBackInTheDLQ: only records of the
// replay (its sluice-redriven-by) written since it started count.
func TestFailedAgainCountsTheReplaysCopiesBackInTheDLQ(t *testing.T) {
	ctx := context.Background()
	c := testkafka.New(t)
	dlq := testkafka.UniqueTopic(t, "again") + ".dlq"
	c.CreateTopics(t, 2, 0, nil, dlq)
	start := time.Now().Truncate(time.Millisecond)
	var recs []*kgo.Record
	add := func(by string, ts time.Time) {
		r := &kgo.Record{Topic: dlq, Partition: int32(len(recs) % 2), Value: []byte("v"), Timestamp: ts}
		if by != "" {
			r.Headers = []kgo.RecordHeader{{Key: failure.HeaderRedrivenBy, Value: []byte(by)}}
		}
		recs = append(recs, r)
	}
	add("shop/fix", start.Add(-time.Hour)) // an earlier run's, before this one started
	add("shop/fix", start.Add(-time.Minute))
	add("shop/fix", start.Add(time.Second))
	add("shop/fix", start.Add(2*time.Second))
	add("shop/fix", start.Add(3*time.Second))
	add("shop/other", start.Add(time.Second))
	add("", start.Add(time.Second))
	if err := c.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner())).ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	n, err := FailedAgain(ctx, []kgo.Opt{kgo.SeedBrokers(c.Brokers...)}, c.Admin(t), dlq, start, "shop/fix")
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("FailedAgain = %d, want 3", n)
	}
}
