package replay

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/internal/testkafka"
)

// benchDLQ is a kfake dead-letter topic of n records over 6 partitions
// (dlqFixture's headers; 100-byte values), shared by the benchmarks.
func benchDLQ(b *testing.B, n int) (*testkafka.Cluster, dlqFixture) {
	b.Helper()
	c := testkafka.New(b)
	f := dlqFixture{dlq: "bench.dlq", target: "bench.retry.1", n: n, base: time.Now().Add(-time.Hour)}
	c.CreateTopics(b, 6, 0, nil, f.dlq, f.target, ParkedTopic(f.dlq))
	cl := c.Client(b, kgo.ProducerBatchMaxBytes(1<<20), kgo.ProducerLinger(5*time.Millisecond))
	value := make([]byte, 100)
	ctx := context.Background()
	const chunk = 50_000
	for from := 0; from < n; from += chunk {
		var rs []*kgo.Record
		for i := from; i < min(n, from+chunk); i++ {
			r := &kgo.Record{Topic: f.dlq, Key: []byte("k" + strconv.Itoa(i)), Value: value}
			r.Headers = append(r.Headers,
				kgo.RecordHeader{Key: "sluice-original-topic", Value: []byte("orders")},
				kgo.RecordHeader{Key: "sluice-original-partition", Value: []byte(strconv.Itoa(i % 6))},
				kgo.RecordHeader{Key: "sluice-original-offset", Value: []byte(strconv.Itoa(i))},
				kgo.RecordHeader{Key: "sluice-error-class", Value: []byte(f.class(i))},
				kgo.RecordHeader{Key: "sluice-error-message", Value: []byte("amount: not a number")})
			rs = append(rs, r)
		}
		if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			b.Fatal(err)
		}
	}
	return c, f
}

// BenchmarkDryRunCount counts the poison pills of a 1,000,000-record
// dead-letter topic (BENCHMARKS.md: target ≤ 10 s).
func BenchmarkDryRunCount(b *testing.B) {
	c, f := benchDLQ(b, 1_000_000)
	ctx := context.Background()
	parts, err := Snapshot(ctx, c.Admin(b), []string{f.dlq}, nil, time.Time{})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		got, err := Count(ctx, conn(c), parts, Selection{Classes: []string{"poison"}})
		if err != nil {
			b.Fatal(err)
		}
		if got.Matched != 333_334 {
			b.Fatalf("matched %d, want 333,334", got.Matched)
		}
	}
	b.ReportMetric(float64(f.n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkRedrive copies 200,000 dead letters to the retry topic in
// transactions (BENCHMARKS.md: target ≥ 50,000 records/s on kfake).
func BenchmarkRedrive(b *testing.B) {
	c, f := benchDLQ(b, 200_000)
	ctx := context.Background()
	parts, err := Snapshot(ctx, c.Admin(b), []string{f.dlq}, nil, time.Time{})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	run := 0
	for b.Loop() {
		run++
		group := "bench-" + strconv.Itoa(run)
		d := &Redrive{Conn: conn(c), Group: group, TransactionalID: group, Parts: parts, Target: f.target, Kind: ToRetryTopic, By: "bench/r"}
		got, err := d.Run(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if got.Done != int64(f.n) {
			b.Fatalf("copied %d, want %d", got.Done, f.n)
		}
	}
	b.ReportMetric(float64(f.n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
