//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/internal/testbroker"
)

// broker is the kfake broker on the host address, embedded in the test
// process, and a client to it.
type broker struct {
	cluster   *kfake.Cluster
	bootstrap string
	cl        *kgo.Client
	adm       *kadm.Client
}

func startBroker(host string) (*broker, error) {
	c, err := testbroker.Start(host, 0)
	if err != nil {
		return nil, err
	}
	addr, err := testbroker.Addr(c)
	if err != nil {
		c.Close()
		return nil, err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.MetadataMinAge(100*time.Millisecond),
		kgo.ProducerLinger(5*time.Millisecond), kgo.ProducerBatchMaxBytes(1<<20))
	if err != nil {
		c.Close()
		return nil, err
	}
	return &broker{cluster: c, bootstrap: addr, cl: cl, adm: kadm.NewClient(cl)}, nil
}

func (b *broker) close() {
	b.cl.Close()
	b.cluster.Close()
}

// createTopic makes a source topic, as the quickstart tells users to first.
func (b *broker) createTopic(t testing.TB, name string, partitions int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := b.adm.CreateTopic(ctx, partitions, 1, nil, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
}

// produce sends records and waits for all of them.
func (b *broker) produce(t testing.TB, recs []*kgo.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := b.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// topics lists the topic names that exist.
func (b *broker) topics(t testing.TB) map[string]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	td, err := b.adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, d := range td {
		if d.Err == nil {
			out[d.Topic] = true
		}
	}
	return out
}

// readAll reads a topic from its start to its current end.
func (b *broker) readAll(t testing.TB, topic string) []*kgo.Record {
	t.Helper()
	return b.read(t, topic)
}

// readCommitted reads a topic from its start to its current end as a
// read_committed consumer: records of aborted transactions are not there.
func (b *broker) readCommitted(t testing.TB, topic string) []*kgo.Record {
	t.Helper()
	var out []*kgo.Record
	for _, r := range b.read(t, topic, kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords()) {
		if !r.Attrs.IsControl() {
			out = append(out, r)
		}
	}
	return out
}

// read reads a topic from its start to its current end with extra client
// options; the last offset of each partition must be a record it returns
// (with read_committed, a transaction marker: keep control records).
func (b *broker) read(t testing.TB, topic string, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ends, err := b.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int32]int64{}
	total := 0
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
			total += int(o.Offset)
		}
	})
	if total == 0 {
		return nil
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(b.bootstrap), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.MetadataMinAge(100 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	seen := map[int32]int64{}
	for done := 0; done < len(want); {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("reading %s: %d of %d records: %v", topic, len(out), total, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset >= want[r.Partition] {
				return
			}
			out = append(out, r)
			seen[r.Partition] = r.Offset + 1
			if seen[r.Partition] == want[r.Partition] {
				done++
			}
		})
	}
	return out
}

// header returns a record's header value.
func header(r *kgo.Record, key string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// orders makes n records for one topic, numbered from first: every
// poisonEvery-th one is a poison pill (not JSON: the http service answers
// 400, the postgres sink can't take its key). Keys and the event-id header
// are the order id.
func orders(topic, prefix string, first, n, poisonEvery int) (recs []*kgo.Record, good, poison []string) {
	for i := first; i < first+n; i++ {
		id := fmt.Sprintf("%s-%07d", prefix, i)
		value := fmt.Sprintf(`{"id":%q,"n":%d,"amount":%d.%02d}`, id, i, i%500, i%100)
		if poisonEvery > 0 && i%poisonEvery == poisonEvery-1 {
			value = fmt.Sprintf("%s is not JSON", id)
			poison = append(poison, id)
		} else {
			good = append(good, id)
		}
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(id), Value: []byte(value),
			Headers: []kgo.RecordHeader{{Key: "event-id", Value: []byte(id)}}})
	}
	return recs, good, poison
}
