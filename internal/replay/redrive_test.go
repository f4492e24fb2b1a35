package replay

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/internal/testkafka"
	"github.com/sluice-dev/sluice/worker/failure"
)

// dlqFixture is a dead-letter topic of n records over 3 partitions: every
// third a poison pill, the rest transient; every tenth was redriven 3 times
// already. Keys are "k<i>"; record i's timestamp is base + i ms.
type dlqFixture struct {
	dlq, target string
	n           int
	base        time.Time
}

func (f dlqFixture) class(i int) string {
	if i%3 == 0 {
		return "poison"
	}
	return "transient"
}

func (f dlqFixture) redrives(i int) int {
	if i%10 == 0 {
		return 3
	}
	return 0
}

func newDLQ(t *testing.T, c *testkafka.Cluster, name string, n int) dlqFixture {
	t.Helper()
	// Unique names: a real cluster keeps a failed test's topics.
	name += "-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	f := dlqFixture{dlq: name + ".dlq", target: name + ".retry.1", n: n, base: time.Now().Add(-time.Hour).Truncate(time.Millisecond)}
	c.CreateTopics(t, 3, 0, nil, f.dlq, f.target, ParkedTopic(f.dlq))
	f.produce(t, c, 0, n)
	return f
}

func (f dlqFixture) produce(t *testing.T, c *testkafka.Cluster, from, to int) {
	t.Helper()
	cl := c.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var rs []*kgo.Record
	for i := from; i < to; i++ {
		r := &kgo.Record{Topic: f.dlq, Partition: int32(i % 3), Key: []byte("k" + strconv.Itoa(i)), Value: []byte("v" + strconv.Itoa(i)),
			Timestamp: f.base.Add(time.Duration(i) * time.Millisecond)}
		add := func(k, v string) { r.Headers = append(r.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)}) }
		add(failure.HeaderOriginalTopic, "orders")
		add(failure.HeaderOriginalPartition, strconv.Itoa(i%3))
		add(failure.HeaderOriginalOffset, strconv.Itoa(i))
		add(failure.HeaderErrorClass, f.class(i))
		add(failure.HeaderErrorMessage, "record "+strconv.Itoa(i)+" failed")
		if n := f.redrives(i); n > 0 {
			add(failure.HeaderRedriveCount, strconv.Itoa(n))
		}
		rs = append(rs, r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// keysIn reads topic with read_committed until it holds want records (or 10 s
// pass without a new one) and counts each key.
func keysIn(t *testing.T, c *testkafka.Cluster, topic string, want int) map[string]int {
	t.Helper()
	cl := c.Client(t, kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := map[string]int{}
	n := 0
	for n < want {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) && fs.NumRecords() == 0 {
			break
		}
		fs.EachRecord(func(r *kgo.Record) { got[string(r.Key)]++; n++ })
	}
	// Whatever else is there arrives within a short wait.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { got[string(r.Key)]++ })
	return got
}

func conn(c *testkafka.Cluster) []kgo.Opt {
	return []kgo.Opt{kgo.SeedBrokers(c.Brokers...), kgo.MetadataMinAge(100 * time.Millisecond)}
}

func snapshotOf(t *testing.T, c *testkafka.Cluster, topic string, ranges map[int32]OffsetRange, since time.Time) []Partition {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	parts, err := Snapshot(ctx, c.Admin(t), []string{topic}, ranges, since)
	if err != nil {
		t.Fatal(err)
	}
	return parts
}

func TestSnapshotAndCount(t *testing.T) {
	c := testkafka.New(t)
	f := newDLQ(t, c, "count", 3000)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	all := snapshotOf(t, c, f.dlq, nil, time.Time{})
	if len(all) != 3 || all[0].Start != 0 || all[0].End != 1000 {
		t.Fatalf("snapshot %+v, want 3 partitions of 0..1000", all)
	}
	got, err := Count(ctx, conn(c), all, Selection{Classes: []string{"poison"}, MaxRedrives: 3})
	if err != nil {
		t.Fatal(err)
	}
	var poison, parked int64
	for i := range f.n {
		if f.class(i) == "poison" {
			poison++
			if f.redrives(i) >= 3 {
				parked++
			}
		}
	}
	if got.Matched != poison || got.Parked != parked || got.ByClass["poison"] != poison || got.ByClass["transient"] != 0 {
		t.Fatalf("count %+v, want %d poison of which %d parked", got, poison, parked)
	}

	// Offsets and time: partition 1 from offset 100 to 199, records at or
	// after base+600 ms (record i is at offset i/3 of partition i%3).
	from, to := int64(100), int64(199)
	parts := snapshotOf(t, c, f.dlq, map[int32]OffsetRange{1: {From: &from, To: &to}}, f.base.Add(600*time.Millisecond))
	if len(parts) != 1 || parts[0].Partition != 1 || parts[0].Start != 200 || parts[0].End != 200 {
		// base+600ms is record 600 = offset 200 of partition 0; in partition 1 the first record at or after it is record 601 = offset 200, past To.
		t.Fatalf("snapshot %+v", parts)
	}
	parts = snapshotOf(t, c, f.dlq, map[int32]OffsetRange{1: {From: &from, To: &to}}, time.Time{})
	got, err = Count(ctx, conn(c), parts, Selection{})
	if err != nil || got.Matched != 100 {
		t.Fatalf("count of offsets 100..199: %+v, %v", got, err)
	}

	// A partition the topic does not have names the field.
	_, err = Snapshot(ctx, c.Admin(t), []string{f.dlq}, map[int32]OffsetRange{7: {}}, time.Time{})
	var bad *InvalidSelectionError
	if !errors.As(err, &bad) || bad.Field != "spec.select.partitions" {
		t.Fatalf("snapshot with partition 7: %v, want an InvalidSelectionError on spec.select.partitions", err)
	}

	// A limit keeps the first matches, partition by partition.
	cut, counts, err := Cut(ctx, conn(c), all, Selection{}, 1500)
	if err != nil {
		t.Fatal(err)
	}
	if counts.Matched != 1500 || cut[0].End != 1000 || cut[1].End != 500 || cut[2].End != cut[2].Start {
		t.Fatalf("cut %+v counts %+v", cut, counts)
	}
}

func TestRedriveCopiesEachSelectedRecordOnceAndEnds(t *testing.T) {
	c := testkafka.New(t)
	f := newDLQ(t, c, "redrive", 3000)
	parts := snapshotOf(t, c, f.dlq, nil, time.Time{})
	// Dead letters that arrive during the redrive are not part of it: it ends.
	f.produce(t, c, f.n, f.n+300)

	sel := Selection{Classes: []string{"poison"}, MaxRedrives: 3}
	d := &Redrive{Conn: conn(c), Group: "sluice-replay." + f.dlq, TransactionalID: "sluice-replay." + f.dlq, Parts: parts,
		Select: sel, Target: f.target, Kind: ToRetryTopic, By: "ns/redrive"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	got, err := d.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantCopied, wantParked := map[string]bool{}, map[string]bool{}
	for i := range f.n {
		if f.class(i) != "poison" {
			continue
		}
		if f.redrives(i) >= 3 {
			wantParked["k"+strconv.Itoa(i)] = true
		} else {
			wantCopied["k"+strconv.Itoa(i)] = true
		}
	}
	if got.Done != int64(len(wantCopied)) || got.Parked != int64(len(wantParked)) {
		t.Fatalf("progress %+v, want %d copied and %d parked", got, len(wantCopied), len(wantParked))
	}
	checkExactly(t, keysIn(t, c, f.target, len(wantCopied)), wantCopied, f.target)
	checkExactly(t, keysIn(t, c, ParkedTopic(f.dlq), len(wantParked)), wantParked, ParkedTopic(f.dlq))

	// Run again (a restarted operator): nothing more is copied, and the totals
	// are recounted from what was committed.
	again, err := d.Run(ctx)
	if err != nil || again != got {
		t.Fatalf("second run: %+v, %v; want %+v", again, err, got)
	}
	checkExactly(t, keysIn(t, c, f.target, len(wantCopied)), wantCopied, f.target)
}

// checkExactly fails unless got holds each wanted key once and nothing else.
func checkExactly(t *testing.T, got map[string]int, want map[string]bool, topic string) {
	t.Helper()
	var missing, dup, extra []string
	for k := range want {
		switch n := got[k]; {
		case n == 0:
			missing = append(missing, k)
		case n > 1:
			dup = append(dup, fmt.Sprintf("%s×%d", k, n))
		}
	}
	for k := range got {
		if !want[k] {
			extra = append(extra, k)
		}
	}
	if len(missing)+len(dup)+len(extra) > 0 {
		t.Fatalf("%s: %d keys, want %d: missing %d %v, duplicated %d %v, not selected %d %v", topic, len(got), len(want),
			len(missing), head(missing), len(dup), head(dup), len(extra), head(extra))
	}
}

func head(s []string) []string { return s[:min(len(s), 5)] }
