package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-dev/sluice/internal/testkafka"
)

func produce(t *testing.T, cl *kgo.Client, topic string, partition int32, n int, ts time.Time) {
	t.Helper()
	for i := range n {
		r := &kgo.Record{Topic: topic, Partition: partition, Value: fmt.Appendf(nil, "v%d", i), Timestamp: ts}
		if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// manualClient sends each record to its Partition field.
func manualClient(t *testing.T, c *testkafka.Cluster, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	return c.Client(t, append([]kgo.Opt{kgo.RecordPartitioner(kgo.ManualPartitioner())}, opts...)...)
}

func commit(t *testing.T, adm *kadm.Client, group, topic string, offsets map[int32]int64) {
	t.Helper()
	os := kadm.Offsets{}
	for p, o := range offsets {
		os.Add(kadm.Offset{Topic: topic, Partition: p, At: o, LeaderEpoch: -1})
	}
	if err := adm.CommitAllOffsets(context.Background(), group, os); err != nil {
		t.Fatal(err)
	}
}

// observe runs one poll of a pool cluster and returns user's observation.
func observe(t *testing.T, c *testkafka.Cluster, w Watch) Observation {
	t.Helper()
	return observeUntil(t, c, w, func(Observation) error { return nil })
}

// observeUntil polls a pool cluster (every 100 ms) until check accepts user's
// observation, for at most 15 s, and returns it; it fails the test with
// check's last complaint. On kfake the first observation is final; a real
// cluster writes transaction markers asynchronously, after EndTransaction
// returns, so a test of them must wait.
func observeUntil(t *testing.T, c *testkafka.Cluster, w Watch, check func(Observation) error) Observation {
	t.Helper()
	w.Interval = 100 * time.Millisecond
	got := make(chan Observation, 1)
	pool := NewPool(func(_ string, o Observation) {
		select {
		case got <- o:
		default:
		}
	})
	defer pool.Close()
	cl, err := pool.Acquire("p", Conn{Brokers: c.Brokers})
	if err != nil {
		t.Fatal(err)
	}
	cl.Watch("p", w)
	deadline := time.After(15 * time.Second)
	var last error
	for {
		select {
		case o := <-got:
			if last = check(o); last == nil {
				return o
			}
		case <-deadline:
			t.Fatalf("no acceptable observation within 15s: %v", last)
			return Observation{}
		}
	}
}

// names returns a unique source topic, its dead-letter topic and a group.
func names(t *testing.T) (topic, dlq, group string) {
	topic = testkafka.UniqueTopic(t, "orders")
	return topic, topic + ".dlq", testkafka.UniqueGroup(t, "g")
}

func TestSampleLagTimestampsAndDeadLetters(t *testing.T) {
	c, adm, _ := testCluster(t)
	topic, dlq, group := names(t)
	createTopic(t, c, topic, 3)
	createTopic(t, c, dlq, 2)
	cl := manualClient(t, c)
	old := time.Now().Add(-90 * time.Second).Truncate(time.Millisecond)
	produce(t, cl, topic, 0, 10, old)
	produce(t, cl, topic, 1, 5, time.Now())
	produce(t, cl, dlq, 1, 4, time.Now())
	commit(t, adm, group, topic, map[int32]int64{0: 4, 1: 5}) // partition 2: never committed, empty

	o := observe(t, c, Watch{Group: group, Topic: topic, DeadLetterTopic: dlq, Interval: time.Second})
	if o.Err != nil {
		t.Fatal(o.Err)
	}
	want := []Offsets{
		{Partition: 0, Start: 0, End: 10, Committed: 4, Oldest: old},
		{Partition: 1, Start: 0, End: 5, Committed: 5},
		{Partition: 2, Start: 0, End: 0, Committed: -1},
	}
	if fmt.Sprint(o.Partitions) != fmt.Sprint(want) {
		t.Errorf("partitions\n got %v\nwant %v", o.Partitions, want)
	}
	if o.DeadLetterRecords != 4 || o.DeadLetterErr != nil {
		t.Errorf("dead letters = %d, %v; want 4", o.DeadLetterRecords, o.DeadLetterErr)
	}
	if o.Members != 0 {
		t.Errorf("members = %d, want 0 (nobody consumes)", o.Members)
	}
}

// TestSampleLagEqualsWhatTheClientSees: a consumer group consumes and commits
// part of what was produced; the sample's lag per partition equals both what
// the consumer itself knows (produced − consumed) and End − Committed read
// with kadm directly, and its oldest timestamp is that of the first record the
// consumer has not seen.
func TestSampleLagEqualsWhatTheClientSees(t *testing.T) {
	ctx := context.Background()
	c, adm, _ := testCluster(t)
	topic, dlq, group := names(t)
	createTopic(t, c, topic, 3)
	createTopic(t, c, dlq, 1)
	producer := manualClient(t, c)
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	stamp := func(p int32, offset int64) time.Time {
		return base.Add(time.Duration(int64(p)*1000+offset) * time.Millisecond)
	}
	produced := map[int32]int64{0: 40, 1: 25, 2: 10}
	var recs []*kgo.Record
	for p, n := range produced {
		for i := range n {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: fmt.Appendf(nil, "%d-%d", p, i), Timestamp: stamp(p, i)})
		}
	}
	if err := producer.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// The group consumes 42 of the 75 records, however the fetches split them,
	// and commits what it consumed. It stays in the group while the sample runs.
	const consume = 42
	consumer := manualClient(t, c, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	consumed := map[int32]int64{}
	pollCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for n := 0; n < consume; {
		fs := consumer.PollRecords(pollCtx, consume-n)
		if err := pollCtx.Err(); err != nil {
			t.Fatalf("consumed %d of %d: %v", n, consume, err)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Logf("fetch %s[%d]: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset != consumed[r.Partition] {
				t.Errorf("partition %d: got offset %d after consuming %d", r.Partition, r.Offset, consumed[r.Partition])
			}
			consumed[r.Partition]++
			n++
		})
	}
	if err := consumer.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("produced %v, consumed %v", produced, consumed)

	// kadm, directly: end − committed.
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	direct := map[int32]int64{}
	for p := range produced {
		end, _ := ends.Lookup(topic, p)
		at := int64(0) // a partition the group has not committed: it starts at 0
		if o, ok := committed.Lookup(topic, p); ok && o.At >= 0 {
			at = o.At
		}
		direct[p] = end.Offset - at
	}

	o := observeUntil(t, c, Watch{Group: group, Topic: topic, DeadLetterTopic: dlq}, func(o Observation) error {
		if o.Err != nil {
			return o.Err
		}
		if o.Members != 1 || o.GroupState != "Stable" {
			return fmt.Errorf("members = %d, state %q; want 1, Stable", o.Members, o.GroupState)
		}
		return nil
	})
	var total int64
	for _, p := range o.Partitions {
		from := p.Committed
		if from < 0 {
			from = p.Start
		}
		lag := p.End - from
		client := produced[p.Partition] - consumed[p.Partition]
		total += lag
		if lag != client || lag != direct[p.Partition] {
			t.Errorf("partition %d: sample lag %d (%+v), the consumer's %d, kadm's end − committed %d", p.Partition, lag, p, client, direct[p.Partition])
		}
		var want time.Time
		if client > 0 {
			want = stamp(p.Partition, consumed[p.Partition])
		}
		if !p.Oldest.Equal(want) {
			t.Errorf("partition %d: oldest %v, want %v (the first record the consumer has not seen)", p.Partition, p.Oldest, want)
		}
	}
	if len(o.Partitions) != len(produced) || total != 75-consume {
		t.Errorf("%d partitions, total lag %d; want %d, %d", len(o.Partitions), total, len(produced), 75-consume)
	}
}

func TestSampleNoCommitMeasuresFromLogStart(t *testing.T) {
	c, adm, _ := testCluster(t)
	topic, dlq, group := names(t)
	createTopic(t, c, topic, 1)
	createTopic(t, c, dlq, 1)
	cl := manualClient(t, c)
	produce(t, cl, topic, 0, 10, time.Now())
	// Records 0..3 deleted by retention: the group would start at 4.
	os := kadm.Offsets{}
	os.Add(kadm.Offset{Topic: topic, Partition: 0, At: 4})
	if _, err := adm.DeleteRecords(context.Background(), os); err != nil {
		t.Fatal(err)
	}
	o := observe(t, c, Watch{Group: group, Topic: topic, DeadLetterTopic: dlq})
	if o.Err != nil {
		t.Fatal(o.Err)
	}
	p := o.Partitions[0]
	if p.Start != 4 || p.End != 10 || p.Committed != -1 || p.Oldest.IsZero() {
		t.Errorf("partition = %+v; want start 4, end 10, no commit, oldest read at the log start", p)
	}
}

// TestSampleSeesThroughTransactionMarkers: a group that consumed everything a
// transactional producer wrote sits one below the high watermark (the commit
// marker). The sample must tell that nothing readable is left.
func TestSampleSeesThroughTransactionMarkers(t *testing.T) {
	c, adm, _ := testCluster(t)
	topic, dlq, group := names(t)
	createTopic(t, c, topic, 1)
	createTopic(t, c, dlq, 1)
	tx := manualClient(t, c, kgo.TransactionalID(testkafka.UniqueGroup(t, "tx")))
	for _, commitTxn := range []kgo.TransactionEndTry{kgo.TryCommit, kgo.TryAbort} {
		if err := tx.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if err := tx.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Partition: 0, Value: []byte("x")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.EndTransaction(context.Background(), commitTxn); err != nil {
			t.Fatal(err)
		}
	}
	// Log: 0-2 committed data, 3 commit marker, 4-6 aborted data, 7 abort marker.
	// A real broker writes the markers after EndTransaction returns.
	commit(t, adm, group, topic, map[int32]int64{0: 3})
	w := Watch{Group: group, Topic: topic, DeadLetterTopic: dlq}
	observeUntil(t, c, w, func(o Observation) error {
		if o.Err != nil {
			return o.Err
		}
		if p := o.Partitions[0]; p.End != 8 || !p.OnlyMarkers {
			return fmt.Errorf("partition = %+v; want end 8 and only markers/aborted records left", p)
		}
		return nil
	})

	// With real data after the group's position it is lagging.
	commit(t, adm, group, topic, map[int32]int64{0: 1})
	o := observe(t, c, w)
	if p := o.Partitions[0]; p.OnlyMarkers || p.Oldest.IsZero() {
		t.Errorf("partition = %+v; want lagging with a timestamp", p)
	}
}

// TestSampleOffsetFetchPartitionErrorIsUnknown: an OffsetFetch answer with an
// error for one partition says nothing about the group's commit there. The
// sample must not read it as "no commit" (lag from the log start, a spurious
// scale-up) but as unknown, naming the group, topic and partition; once the
// coordinator answers again, the commit is back.
func TestSampleOffsetFetchPartitionErrorIsUnknown(t *testing.T) {
	testkafka.FakeOnly(t, "answers OffsetFetch by hand")
	c := testkafka.NewFake(t, kfake.NumBrokers(3))
	adm := c.Admin(t)
	topic, dlq, group := names(t)
	createTopic(t, c, topic, 2)
	createTopic(t, c, dlq, 1)
	cl := manualClient(t, c)
	produce(t, cl, topic, 0, 5, time.Now())
	produce(t, cl, topic, 1, 5, time.Now())
	commit(t, adm, group, topic, map[int32]int64{0: 5, 1: 2})
	meta, err := adm.Metadata(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	topicID := meta.Topics[topic].ID

	var failing atomic.Bool
	failing.Store(true)
	c.Fake.ControlKey(int16(kmsg.OffsetFetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		r := req.(*kmsg.OffsetFetchRequest)
		if !failing.Load() || len(r.Groups) != 1 || r.Groups[0].Group != group {
			c.Fake.DropControl()
			return nil, nil, false
		}
		c.Fake.KeepControl()
		resp := r.ResponseKind().(*kmsg.OffsetFetchResponse)
		g := kmsg.NewOffsetFetchResponseGroup()
		g.Group = group
		rt := kmsg.NewOffsetFetchResponseGroupTopic()
		rt.Topic, rt.TopicID = topic, topicID
		ok := kmsg.NewOffsetFetchResponseGroupTopicPartition()
		ok.Partition, ok.Offset, ok.LeaderEpoch = 0, 5, -1
		bad := kmsg.NewOffsetFetchResponseGroupTopicPartition()
		bad.Partition, bad.Offset, bad.LeaderEpoch = 1, -1, -1
		bad.ErrorCode = kerr.UnstableOffsetCommit.Code // a transactional commit pending (KIP-447)
		rt.Partitions = []kmsg.OffsetFetchResponseGroupTopicPartition{ok, bad}
		g.Topics = []kmsg.OffsetFetchResponseGroupTopic{rt}
		resp.Groups = []kmsg.OffsetFetchResponseGroup{g}
		return resp, nil, true
	})
	w := Watch{Group: group, Topic: topic, DeadLetterTopic: dlq}
	o := observeUntil(t, c, w, func(o Observation) error {
		if o.Err == nil {
			return fmt.Errorf("no error; partitions %+v", o.Partitions)
		}
		return nil
	})
	if !errors.Is(o.Err, kerr.UnstableOffsetCommit) {
		t.Errorf("err = %v, want UNSTABLE_OFFSET_COMMIT", o.Err)
	}
	for _, want := range []string{group, topic, "partition 1"} {
		if !strings.Contains(o.Err.Error(), want) {
			t.Errorf("err = %q, does not name %q", o.Err, want)
		}
	}
	if len(o.Partitions) != 0 {
		t.Errorf("partitions %+v alongside the error; an observation with Err has nothing else", o.Partitions)
	}

	failing.Store(false)
	observeUntil(t, c, w, func(o Observation) error {
		if o.Err != nil {
			return o.Err
		}
		if len(o.Partitions) != 2 || o.Partitions[0].Committed != 5 || o.Partitions[1].Committed != 2 {
			return fmt.Errorf("partitions %+v; want committed 5 and 2", o.Partitions)
		}
		return nil
	})
}

func TestSampleMissingSourceTopic(t *testing.T) {
	c, _, _ := testCluster(t)
	topic, dlq, group := names(t)
	createTopic(t, c, dlq, 1)
	o := observe(t, c, Watch{Group: group, Topic: topic, DeadLetterTopic: dlq})
	if !errors.Is(o.Err, ErrTopicNotFound) {
		t.Errorf("err = %v, want topic not found", o.Err)
	}
}

func TestSampleCountsGroupMembers(t *testing.T) {
	for _, nextGen := range []bool{false, true} {
		name := "classic"
		if nextGen {
			name = "KIP-848"
		}
		t.Run(name, func(t *testing.T) { testSampleCountsGroupMembers(t, nextGen) })
	}
}

// testSampleCountsGroupMembers: one member, classic or KIP-848; a KIP-848
// group is seen only through ConsumerGroupDescribe.
func testSampleCountsGroupMembers(t *testing.T, nextGen bool) {
	c, _, _ := testCluster(t)
	topic, dlq, group := names(t)
	createTopic(t, c, topic, 2)
	createTopic(t, c, dlq, 1)
	var joined sync.WaitGroup
	joined.Add(1)
	var once sync.Once
	opts := []kgo.Opt{kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) { once.Do(joined.Done) })}
	if nextGen {
		opts = append(opts, kgo.Balancers(kgo.StickyBalancer()), kgo.ServerSideBalancer())
	}
	consumer := manualClient(t, c, opts...)
	go func() {
		for {
			if fs := consumer.PollFetches(context.Background()); fs.IsClientClosed() {
				return
			}
		}
	}()
	joined.Wait()
	observeUntil(t, c, Watch{Group: group, Topic: topic, DeadLetterTopic: dlq, NextGen: nextGen}, func(o Observation) error {
		if o.Members != 1 || o.GroupState != "Stable" {
			return fmt.Errorf("members = %d, state %q; want 1, Stable", o.Members, o.GroupState)
		}
		return nil
	})
}

func TestPoolSharesOneClientPerConnection(t *testing.T) {
	c, _, _ := testCluster(t)
	pool := NewPool(func(string, Observation) {})
	defer pool.Close()
	conn := Conn{Brokers: c.Brokers}
	a, err := pool.Acquire("a", conn)
	if err != nil {
		t.Fatal(err)
	}
	reversed := slices.Clone(c.Brokers)
	slices.Reverse(reversed)
	b, err := pool.Acquire("b", Conn{Brokers: reversed})
	if err != nil {
		t.Fatal(err)
	}
	if a != b || pool.Clusters() != 1 {
		t.Fatalf("two users of the same brokers got %d clients", pool.Clusters())
	}
	other, err := pool.Acquire("c", Conn{Brokers: conn.Brokers, SASL: &SASL{Mechanism: "PLAIN", Username: "u", Password: "p"}})
	if err != nil {
		t.Fatal(err)
	}
	if other == a || pool.Clusters() != 2 {
		t.Fatal("different credentials must not share a client")
	}
	pool.Release("a")
	if pool.Clusters() != 2 {
		t.Fatal("a client still in use was closed")
	}
	pool.Release("b")
	pool.Release("c")
	if pool.Clusters() != 0 {
		t.Fatalf("%d clients left open with no users", pool.Clusters())
	}
	// A user moving to other brokers releases the old client.
	if _, err := pool.Acquire("a", conn); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Acquire("a", Conn{Brokers: []string{"127.0.0.1:1"}}); err != nil {
		t.Fatal(err)
	}
	if pool.Clusters() != 1 {
		t.Fatalf("clients = %d after a user moved, want 1", pool.Clusters())
	}
}
