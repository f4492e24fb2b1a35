package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
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

// manualPartitioner sends each record to its Partition field.
func manualClient(t *testing.T, c *kfake.Cluster, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(c.ListenAddrs()...),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.MetadataMinAge(100 * time.Millisecond),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
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
func observe(t *testing.T, c *kfake.Cluster, w Watch) Observation {
	t.Helper()
	got := make(chan Observation, 1)
	pool := NewPool(func(_ string, o Observation) {
		select {
		case got <- o:
		default:
		}
	})
	defer pool.Close()
	cl, err := pool.Acquire("p", Conn{Brokers: c.ListenAddrs()})
	if err != nil {
		t.Fatal(err)
	}
	cl.Watch("p", w)
	select {
	case o := <-got:
		return o
	case <-time.After(10 * time.Second):
		t.Fatal("no observation within 10s")
		return Observation{}
	}
}

func TestSampleLagTimestampsAndDeadLetters(t *testing.T) {
	c, adm, _ := newFake(t)
	createTopic(t, adm, "orders", 3)
	createTopic(t, adm, "orders.dlq", 2)
	cl := manualClient(t, c)
	old := time.Now().Add(-90 * time.Second).Truncate(time.Millisecond)
	produce(t, cl, "orders", 0, 10, old)
	produce(t, cl, "orders", 1, 5, time.Now())
	produce(t, cl, "orders.dlq", 1, 4, time.Now())
	commit(t, adm, "g", "orders", map[int32]int64{0: 4, 1: 5}) // partition 2: never committed, empty

	o := observe(t, c, Watch{Group: "g", Topic: "orders", DeadLetterTopic: "orders.dlq", Interval: time.Second})
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

func TestSampleNoCommitMeasuresFromLogStart(t *testing.T) {
	c, adm, _ := newFake(t)
	createTopic(t, adm, "orders", 1)
	createTopic(t, adm, "orders.dlq", 1)
	cl := manualClient(t, c)
	produce(t, cl, "orders", 0, 10, time.Now())
	// Records 0..3 deleted by retention: the group would start at 4.
	os := kadm.Offsets{}
	os.Add(kadm.Offset{Topic: "orders", Partition: 0, At: 4})
	if _, err := adm.DeleteRecords(context.Background(), os); err != nil {
		t.Fatal(err)
	}
	o := observe(t, c, Watch{Group: "fresh", Topic: "orders", DeadLetterTopic: "orders.dlq"})
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
	c, adm, _ := newFake(t)
	createTopic(t, adm, "orders", 1)
	createTopic(t, adm, "orders.dlq", 1)
	tx := manualClient(t, c, kgo.TransactionalID("tx"))
	for _, commitTxn := range []kgo.TransactionEndTry{kgo.TryCommit, kgo.TryAbort} {
		if err := tx.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if err := tx.ProduceSync(context.Background(), &kgo.Record{Topic: "orders", Partition: 0, Value: []byte("x")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.EndTransaction(context.Background(), commitTxn); err != nil {
			t.Fatal(err)
		}
	}
	// Log: 0-2 committed data, 3 commit marker, 4-6 aborted data, 7 abort marker.
	commit(t, adm, "g", "orders", map[int32]int64{0: 3})
	o := observe(t, c, Watch{Group: "g", Topic: "orders", DeadLetterTopic: "orders.dlq"})
	if o.Err != nil {
		t.Fatal(o.Err)
	}
	if p := o.Partitions[0]; p.End != 8 || !p.OnlyMarkers {
		t.Errorf("partition = %+v; want end 8 and only markers/aborted records left", p)
	}

	// With real data after the group's position it is lagging.
	commit(t, adm, "g", "orders", map[int32]int64{0: 1})
	o = observe(t, c, Watch{Group: "g", Topic: "orders", DeadLetterTopic: "orders.dlq"})
	if p := o.Partitions[0]; p.OnlyMarkers || p.Oldest.IsZero() {
		t.Errorf("partition = %+v; want lagging with a timestamp", p)
	}
}

func TestSampleMissingSourceTopic(t *testing.T) {
	c, adm, _ := newFake(t)
	createTopic(t, adm, "orders.dlq", 1)
	o := observe(t, c, Watch{Group: "g", Topic: "orders", DeadLetterTopic: "orders.dlq"})
	if !errors.Is(o.Err, ErrTopicNotFound) {
		t.Errorf("err = %v, want topic not found", o.Err)
	}
}

func TestSampleCountsGroupMembers(t *testing.T) {
	c, adm, _ := newFake(t)
	createTopic(t, adm, "orders", 2)
	createTopic(t, adm, "orders.dlq", 1)
	var joined sync.WaitGroup
	joined.Add(1)
	var once sync.Once
	consumer := manualClient(t, c, kgo.ConsumerGroup("g"), kgo.ConsumeTopics("orders"),
		kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) { once.Do(joined.Done) }))
	go func() {
		for {
			if fs := consumer.PollFetches(context.Background()); fs.IsClientClosed() {
				return
			}
		}
	}()
	joined.Wait()
	o := observe(t, c, Watch{Group: "g", Topic: "orders", DeadLetterTopic: "orders.dlq"})
	if o.Members != 1 || o.GroupState != "Stable" {
		t.Errorf("members = %d, state %q; want 1, Stable", o.Members, o.GroupState)
	}
}

func TestPoolSharesOneClientPerConnection(t *testing.T) {
	c, _, _ := newFake(t)
	pool := NewPool(func(string, Observation) {})
	defer pool.Close()
	conn := Conn{Brokers: c.ListenAddrs()}
	a, err := pool.Acquire("a", conn)
	if err != nil {
		t.Fatal(err)
	}
	b, err := pool.Acquire("b", Conn{Brokers: []string{c.ListenAddrs()[2], c.ListenAddrs()[1], c.ListenAddrs()[0]}})
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
