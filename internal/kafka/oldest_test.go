package kafka

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/internal/testkafka"
)

// The tests in this file pin what the sample says about transactional topics
// against what a read_committed consumer really reads there: each scenario is
// written by real transactional producers, the sample's Oldest and OnlyMarkers
// are checked, and then a read_committed consumer (the oracle) reads from the
// group's position up to a sentinel record appended afterwards and must see
// exactly the records the scenario committed.

// txnWriter is a transactional producer writing to partition 0 of one topic.
// Every record's value names it and its timestamp is unique, so a timestamp
// tells which record the sample saw.
type txnWriter struct {
	t     *testing.T
	cl    *kgo.Client
	topic string
	name  string
	n     int
	base  time.Time
}

func newTxnWriter(t *testing.T, c *testkafka.Cluster, topic, name string, base time.Time) *txnWriter {
	t.Helper()
	cl := manualClient(t, c, kgo.TransactionalID(testkafka.UniqueGroup(t, "tx-"+name)))
	return &txnWriter{t: t, cl: cl, topic: topic, name: name, base: base}
}

func (w *txnWriter) begin() {
	w.t.Helper()
	if err := w.cl.BeginTransaction(); err != nil {
		w.t.Fatal(err)
	}
}

// write produces one record and returns its value.
func (w *txnWriter) write() string {
	w.t.Helper()
	v := fmt.Sprintf("%s-%d", w.name, w.n)
	r := &kgo.Record{Topic: w.topic, Partition: 0, Value: []byte(v), Timestamp: stampOf(w.base, v)}
	w.n++
	if err := w.cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
		w.t.Fatal(err)
	}
	return v
}

func (w *txnWriter) end(commit bool) {
	w.t.Helper()
	how := kgo.TryAbort
	if commit {
		how = kgo.TryCommit
	}
	if err := w.cl.EndTransaction(context.Background(), how); err != nil {
		w.t.Fatal(err)
	}
}

// stampOf is the timestamp of the record with value v: base plus a
// millisecond offset unique to v.
func stampOf(base time.Time, v string) time.Time {
	var h int64
	for _, c := range v {
		h = (h*131 + int64(c)) % 1_000_000
	}
	return base.Add(time.Duration(h) * time.Millisecond)
}

// waitStable waits until no transaction is open on partition 0 of topic and
// every marker is written (last stable offset = high watermark): a real broker
// writes markers after EndTransaction returns.
func waitStable(t *testing.T, adm *kadm.Client, topic string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		lso, err1 := adm.ListCommittedOffsets(context.Background(), topic)
		hwm, err2 := adm.ListEndOffsets(context.Background(), topic)
		if err1 == nil && err2 == nil {
			l, _ := lso.Lookup(topic, 0)
			h, _ := hwm.Lookup(topic, 0)
			if l.Err == nil && h.Err == nil && l.Offset == h.Offset {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: transactions still open after 15s (%v %v)", topic, err1, err2)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readCommitted reads partition 0 of topic from offset from as a
// read_committed consumer until stop accepts a record, and returns the records
// before that one.
func readCommitted(t *testing.T, c *testkafka.Cluster, topic string, from int64, stop func(*kgo.Record) bool) []*kgo.Record {
	t.Helper()
	cl := c.Client(t, kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(from)}}))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var got []*kgo.Record
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read_committed from %d: stop record not reached in 15s, read %v", from, values(got))
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Logf("read_committed fetch: %v", err) })
		for _, r := range fs.Records() {
			if stop(r) {
				return got
			}
			got = append(got, r)
		}
	}
}

// positionAfter is the offset a group commits after consuming the first n
// records a read_committed consumer reads from offset 0 (0 for n = 0).
func positionAfter(t *testing.T, c *testkafka.Cluster, topic string, n int) int64 {
	t.Helper()
	if n == 0 {
		return 0
	}
	var read int
	var last *kgo.Record
	readCommitted(t, c, topic, 0, func(r *kgo.Record) bool {
		read++
		last = r
		return read == n
	})
	return last.Offset + 1
}

// checkReadable is the oracle: it appends a non-transactional sentinel
// record and checks that a read_committed consumer reading from offset from
// gets exactly want before it.
func checkReadable(t *testing.T, c *testkafka.Cluster, topic string, from int64, want []string) {
	t.Helper()
	const sentinel = "sentinel"
	produceValue(t, manualClient(t, c), topic, sentinel)
	got := values(readCommitted(t, c, topic, from, func(r *kgo.Record) bool { return string(r.Value) == sentinel }))
	if !slices.Equal(got, want) {
		t.Errorf("a read_committed consumer at %d reads %v, the scenario committed %v", from, got, want)
	}
}

func produceValue(t *testing.T, cl *kgo.Client, topic, v string) {
	t.Helper()
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Partition: 0, Value: []byte(v)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func values(rs []*kgo.Record) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = string(r.Value)
	}
	return out
}

// expectPartition0 is a check for observeUntil: partition 0 has End end (0:
// any), OnlyMarkers onlyMarkers and Oldest oldest (zero: unknown).
func expectPartition0(end int64, onlyMarkers bool, oldest time.Time) func(Observation) error {
	return func(o Observation) error {
		if o.Err != nil {
			return o.Err
		}
		p := o.Partitions[0]
		if (end != 0 && p.End != end) || p.OnlyMarkers != onlyMarkers || !p.Oldest.Equal(oldest) {
			return fmt.Errorf("partition 0 = %+v; want end %d, only markers %v, oldest %v", p, end, onlyMarkers, oldest)
		}
		return nil
	}
}

// TestLagAfterAbortThenCommit is the case an outside review found reported as
// lag 0: 3 aborted records, the abort marker, 3 committed records and the
// commit marker, the group at 0. A read_committed consumer has the 3 committed
// records to read, so the partition lags and its oldest record is the first
// committed one. (The lag in offsets, End − Committed = 8, counts the aborted
// records and markers too, as Kafka's own lag does.)
func TestLagAfterAbortThenCommit(t *testing.T) {
	c, adm, _ := testCluster(t)
	topic, dlq, group := names(t)
	createTopic(t, c, topic, 1)
	createTopic(t, c, dlq, 1)
	base := time.Now().Add(-30 * time.Minute).Truncate(time.Millisecond)
	p := newTxnWriter(t, c, topic, "p", base)
	p.begin()
	for range 3 {
		p.write()
	}
	p.end(false)
	p.begin()
	var committed []string
	for range 3 {
		committed = append(committed, p.write())
	}
	p.end(true)
	waitStable(t, adm, topic)
	w := Watch{Group: group, Topic: topic, DeadLetterTopic: dlq}

	// A group that never committed is read from the log start (startFrom
	// Earliest), with the same answer.
	o := observeUntil(t, c, w, expectPartition0(8, false, stampOf(base, committed[0])))
	if p := o.Partitions[0]; p.Committed != -1 {
		t.Errorf("committed %d before the group committed", p.Committed)
	}

	commit(t, adm, group, topic, map[int32]int64{0: 0})
	o = observeUntil(t, c, w, expectPartition0(8, false, stampOf(base, committed[0])))
	if p := o.Partitions[0]; p.End-p.Committed != 8 {
		t.Errorf("offset lag %d, want 8", p.End-p.Committed)
	}
	checkReadable(t, c, topic, 0, committed)
}

// TestLagOneProducersTransactions: one transactional producer writes a
// sequence of committed and aborted transactions; for a group at each
// position the sample must say what a read_committed consumer reads from
// there: the first record it gets, or that nothing but markers and aborted
// records is left.
func TestLagOneProducersTransactions(t *testing.T) {
	type txn struct {
		commit  bool
		records int
	}
	for _, tc := range []struct {
		name string
		txns []txn
		// consumed: how many committed records the group consumed before the
		// sample, one case per entry.
		consumed []int
	}{
		{"commit then abort", []txn{{true, 3}, {false, 3}}, []int{0, 3}},
		{"several aborts in one window", []txn{{false, 2}, {true, 2}, {false, 2}, {false, 2}, {true, 2}}, []int{0, 1, 2, 3, 4}},
		{"aborts only", []txn{{false, 2}, {false, 2}, {false, 2}}, []int{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, adm, _ := testCluster(t)
			topic, dlq, group := names(t)
			createTopic(t, c, topic, 1)
			createTopic(t, c, dlq, 1)
			base := time.Now().Add(-30 * time.Minute).Truncate(time.Millisecond)
			p := newTxnWriter(t, c, topic, "p", base)
			var committed []string
			for _, x := range tc.txns {
				p.begin()
				for range x.records {
					if v := p.write(); x.commit {
						committed = append(committed, v)
					}
				}
				p.end(x.commit)
			}
			waitStable(t, adm, topic)
			for _, n := range tc.consumed {
				at := positionAfter(t, c, topic, n)
				commit(t, adm, group, topic, map[int32]int64{0: at})
				want := expectPartition0(0, true, time.Time{})
				if n < len(committed) {
					want = expectPartition0(0, false, stampOf(base, committed[n]))
				}
				o := observeUntil(t, c, Watch{Group: group, Topic: topic, DeadLetterTopic: dlq}, want)
				t.Logf("consumed %d (at %d): %+v", n, at, o.Partitions[0])
			}
			checkReadable(t, c, topic, positionAfter(t, c, topic, tc.consumed[len(tc.consumed)-1]),
				committed[tc.consumed[len(tc.consumed)-1]:])
		})
	}
}

// TestLagTwoProducersInterleaved: two transactional producers write
// interleaved; in the first round p aborts and q commits, in the second p
// commits and q aborts. A group that consumed q's first round must see p's
// second round as lag, although p has an aborted transaction in the same
// window.
func TestLagTwoProducersInterleaved(t *testing.T) {
	c, adm, _ := testCluster(t)
	topic, dlq, group := names(t)
	createTopic(t, c, topic, 1)
	createTopic(t, c, dlq, 1)
	base := time.Now().Add(-30 * time.Minute).Truncate(time.Millisecond)
	p := newTxnWriter(t, c, topic, "p", base)
	q := newTxnWriter(t, c, topic, "q", base)
	var committed []string
	round := func(pCommits bool) {
		p.begin()
		q.begin()
		for range 2 {
			pv, qv := p.write(), q.write()
			if pCommits {
				committed = append(committed, pv)
			} else {
				committed = append(committed, qv)
			}
		}
		p.end(pCommits)
		q.end(!pCommits)
		waitStable(t, adm, topic)
	}
	round(false)
	round(true)
	w := Watch{Group: group, Topic: topic, DeadLetterTopic: dlq}

	observeUntil(t, c, w, expectPartition0(0, false, stampOf(base, committed[0])))
	at := positionAfter(t, c, topic, 2) // q's first round consumed
	commit(t, adm, group, topic, map[int32]int64{0: at})
	observeUntil(t, c, w, expectPartition0(0, false, stampOf(base, committed[2])))
	checkReadable(t, c, topic, at, committed[2:])
}

// TestLagOpenTransaction: records of a transaction that is not yet decided
// count as lag (they are work the group will have to do if it commits), but a
// read_committed consumer cannot read them yet, so their time is unknown. Once
// the transaction commits, its first record is the oldest; once one aborts,
// only markers and aborted records are left.
func TestLagOpenTransaction(t *testing.T) {
	for _, commitIt := range []bool{true, false} {
		t.Run(fmt.Sprintf("then commit=%v", commitIt), func(t *testing.T) {
			c, adm, _ := testCluster(t)
			topic, dlq, group := names(t)
			createTopic(t, c, topic, 1)
			createTopic(t, c, dlq, 1)
			base := time.Now().Add(-30 * time.Minute).Truncate(time.Millisecond)
			p := newTxnWriter(t, c, topic, "p", base)
			p.begin()
			for range 3 {
				p.write()
			}
			p.end(true)
			waitStable(t, adm, topic)
			at := positionAfter(t, c, topic, 3) // the committed records consumed
			commit(t, adm, group, topic, map[int32]int64{0: at})
			w := Watch{Group: group, Topic: topic, DeadLetterTopic: dlq}

			p.begin()
			var open []string
			for range 3 {
				open = append(open, p.write())
			}
			// 0-2 committed, 3 commit marker, 4-6 open.
			observeUntil(t, c, w, expectPartition0(7, false, time.Time{}))

			p.end(commitIt)
			waitStable(t, adm, topic)
			if commitIt {
				observeUntil(t, c, w, expectPartition0(8, false, stampOf(base, open[0])))
				checkReadable(t, c, topic, at, open)
			} else {
				observeUntil(t, c, w, expectPartition0(8, true, time.Time{}))
				checkReadable(t, c, topic, at, nil)
			}
		})
	}
}

func TestReadableVerdict(t *testing.T) {
	at := time.UnixMilli(1_700_000_000_000)
	rec := func(offset int64) *kgo.Record { return &kgo.Record{Offset: offset, Timestamp: at} }
	for _, tc := range []struct {
		name        string
		first       *kgo.Record
		next, end   int64
		ts          time.Time
		onlyMarkers bool
		ok          bool
	}{
		{"a record below end", rec(5), 6, 10, at, false, true},
		{"markers up to end", nil, 10, 10, time.Time{}, true, true},
		{"markers past end (written after the sample)", nil, 12, 10, time.Time{}, true, true},
		{"the first record is past end: nothing readable below it", rec(11), 12, 10, time.Time{}, true, true},
		{"stopped short of end: bytes ran out or an open transaction", nil, 7, 10, time.Time{}, false, false},
		{"nothing returned", nil, 3, 10, time.Time{}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts, onlyMarkers, ok := readableVerdict(tc.first, tc.next, tc.end)
			if !ts.Equal(tc.ts) || onlyMarkers != tc.onlyMarkers || ok != tc.ok {
				t.Errorf("= %v, %v, %v; want %v, %v, %v", ts, onlyMarkers, ok, tc.ts, tc.onlyMarkers, tc.ok)
			}
		})
	}
}

func TestFirstBatches(t *testing.T) {
	// batch is a frame of n bytes in all: base offset, length of the rest, body.
	batch := func(n int) []byte {
		b := make([]byte, n)
		b[11] = byte(n - 12)
		return b
	}
	three := slices.Concat(batch(20), batch(30), batch(40))
	for _, tc := range []struct {
		name string
		raw  []byte
		n    int
		len  int
		all  bool
	}{
		{"one of three", three, 1, 20, false},
		{"two of three", three, 2, 50, false},
		{"exactly three", three, 3, 90, true},
		{"more than there are", three, 8, 90, true},
		{"a partial batch at the end", slices.Concat(batch(20), batch(30)[:25]), 2, 20, true},
		{"a partial header at the end", slices.Concat(batch(20), []byte{0, 0, 0}), 2, 20, true},
		{"empty", nil, 1, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, all := firstBatches(tc.raw, tc.n)
			if len(got) != tc.len || all != tc.all {
				t.Errorf("= %d bytes, all %v; want %d, %v", len(got), all, tc.len, tc.all)
			}
		})
	}
}
