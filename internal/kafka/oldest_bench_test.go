package kafka

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-dev/sluice/internal/testkafka"
)

// BenchmarkOldestDecision measures the CPU the sampler spends on one lagging
// partition's part of a read_committed Fetch (oldestFetchBytes of 100-byte
// random records, batches of 100, snappy as kgo produces by default), the
// group's position inside the first batch: firstReadable, which processes
// growing prefixes of the batches, against processing the whole response.
func BenchmarkOldestDecision(b *testing.B) {
	c := testkafka.NewFake(b, kfake.NumBrokers(1))
	cl := c.Client(b, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))
	topic := "bench"
	c.CreateTopics(b, 1, 1, nil, topic)
	for range 20 {
		var recs []*kgo.Record
		for range 100 {
			value := make([]byte, 100)
			_, _ = rand.Read(value) // as incompressible as most payloads
			recs = append(recs, &kgo.Record{Topic: topic, Partition: 0, Value: value, Timestamp: time.Now()})
		}
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			b.Fatal(err)
		}
	}
	meta, err := c.Admin(b).Metadata(context.Background(), topic)
	if err != nil {
		b.Fatal(err)
	}
	const from = 10
	req := newOldestFetch()
	addFetchPartition(req, topic, meta.Topics[topic].ID, 0, from)
	resp, err := cl.Request(context.Background(), req)
	if err != nil {
		b.Fatal(err)
	}
	rp := resp.(*kmsg.FetchResponse).Topics[0].Partitions[0]
	b.Logf("response: %d bytes", len(rp.RecordBatches))

	whole := func(rp *kmsg.FetchResponseTopicPartition, from, end int64) (time.Time, bool, bool) {
		opts := kgo.ProcessFetchPartitionOpts{Offset: from, Partition: rp.Partition, IsolationLevel: kgo.ReadCommitted()}
		fp, next := kgo.ProcessFetchPartition(opts, rp, kgo.DefaultDecompressor(), nil)
		var first *kgo.Record
		if len(fp.Records) > 0 {
			first = fp.Records[0]
		}
		return readableVerdict(first, next, end)
	}
	for _, v := range []struct {
		name string
		f    func(*kmsg.FetchResponseTopicPartition, int64, int64) (time.Time, bool, bool)
	}{{"prefixes", firstReadable}, {"whole", whole}} {
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				if _, _, ok := v.f(&rp, from, rp.HighWatermark); !ok {
					b.Fatal("no answer")
				}
			}
		})
	}
}
