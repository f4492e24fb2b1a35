package worker

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func recs(topic string, p int32, offsets ...int64) []*kgo.Record {
	out := make([]*kgo.Record, len(offsets))
	for i, o := range offsets {
		out[i] = &kgo.Record{Topic: topic, Partition: p, Offset: o, LeaderEpoch: 3}
	}
	return out
}

func TestTrackerCommitsOnlyTheFinishedPrefix(t *testing.T) {
	cases := []struct {
		name       string
		offsets    []int64
		doneIdx    []int
		wantCommit int64 // -1: nothing committable
		wantFirst  int64 // -1: nothing unfinished
	}{
		{"nothing done", []int64{0, 1, 2}, nil, -1, 0},
		{"all done in order", []int64{0, 1, 2}, []int{0, 1, 2}, 3, -1},
		{"a gap holds the commit back", []int64{0, 1, 2}, []int{0, 2}, 1, 1},
		{"out-of-order completion catches up", []int64{0, 1, 2}, []int{2, 1, 0}, 3, -1},
		{"offset gaps (compaction, markers) are contiguous records", []int64{5, 9, 12}, []int{0, 1}, 10, 12},
		{"first not done blocks everything", []int64{7, 8}, []int{1}, -1, 7},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTracker()
			rs := recs("orders", 0, tc.offsets...)
			tr.start(rs)
			for _, i := range tc.doneIdx {
				tr.done(rs[i])
			}
			got := tr.committable()
			if tc.wantCommit < 0 {
				if len(got) != 0 {
					t.Fatalf("committable = %v, want nothing", got)
				}
			} else if eo := got["orders"][0]; eo.Offset != tc.wantCommit || eo.Epoch != 3 {
				t.Fatalf("committable = %+v, want offset %d epoch 3", eo, tc.wantCommit)
			}
			first, ok := tr.firstUnfinished()[tp{"orders", 0}]
			if tc.wantFirst < 0 && ok || tc.wantFirst >= 0 && first != tc.wantFirst {
				t.Fatalf("firstUnfinished = %d (%v), want %d", first, ok, tc.wantFirst)
			}
		})
	}
}

func TestTrackerHandsOutEachCommitOnceAndForgetsRevokedPartitions(t *testing.T) {
	tr := newTracker()
	a, b := recs("orders", 0, 0, 1), recs("orders", 1, 0)
	tr.start(a)
	tr.start(b)
	tr.done(a[0])
	tr.done(b[0])
	c := tr.committable()
	if len(c["orders"]) != 2 {
		t.Fatalf("committable = %v", c)
	}
	tr.committed(c)
	if c := tr.committable(); len(c) != 0 {
		t.Fatalf("already committed offsets handed out again: %v", c)
	}
	tr.done(a[1])
	if c := tr.committableFor(map[string][]int32{"orders": {0}}); c["orders"][0].Offset != 2 {
		t.Fatalf("committableFor = %v", c)
	}
	tr.drop(map[string][]int32{"orders": {0}})
	if tr.done(a[1]) {
		t.Error("a late ack for a revoked partition's record was tracked")
	}
	tr.done(a[1]) // a late ack for a revoked partition is ignored
	if c := tr.committable(); len(c) != 0 {
		t.Fatalf("revoked partition still committable: %v", c)
	}
}

func TestALateAckDoesNotFinishTheRefetchedRecord(t *testing.T) {
	tr := newTracker()
	old := recs("orders", 0, 5)
	tr.start(old)
	tr.forgetUnfinished(tp{"orders", 0}) // rewound: offset 5 will be fetched again
	again := recs("orders", 0, 5)
	tr.start(again)
	if tr.done(old[0]) {
		t.Fatal("the old record's ack was applied to the re-fetched one")
	}
	if c := tr.committable(); len(c) != 0 {
		t.Fatalf("committable = %v before the re-fetched record is handled", c)
	}
	tr.done(again[0])
	if c := tr.committable(); c["orders"][0].Offset != 6 {
		t.Fatalf("committable = %v", c)
	}
}

// Records of several polls and chunks finish in any order; the commit point
// only moves over the finished prefix, and doneAll counts each record once.
func TestTrackerAcrossPollsChunksAndPartitions(t *testing.T) {
	tr := newTracker()
	commitOf := func(p int32) int64 {
		t.Helper()
		eo, ok := tr.committable()["orders"][p]
		if !ok {
			return -1
		}
		return eo.Offset
	}
	first := recs("orders", 0, 0, 1, 2, 3, 4)
	tr.start(first)
	if n := tr.doneAll(first[:2]); n != 2 {
		t.Fatalf("doneAll = %d, want 2", n)
	}
	tr.done(first[3]) // a parked copy acknowledged out of order
	if got := commitOf(0); got != 2 {
		t.Fatalf("commit = %d, want 2", got)
	}
	second := recs("orders", 0, 5, 6, 7)
	tr.start(second) // memory of the finished prefix is reused
	if n := tr.doneAll(second); n != 3 {
		t.Fatalf("doneAll = %d, want 3", n)
	}
	if got := commitOf(0); got != 2 {
		t.Fatalf("commit = %d, want 2 (offset 2 unfinished)", got)
	}
	tr.done(first[2])
	if got := commitOf(0); got != 4 {
		t.Fatalf("commit = %d, want 4 (offset 4 unfinished)", got)
	}
	if n := tr.doneAll(append(first[:1:1], first[4])); n != 1 {
		t.Fatalf("doneAll counted an already finished record: %d, want 1", n)
	}
	if got := commitOf(0); got != 8 {
		t.Fatalf("commit = %d, want 8", got)
	}
	if u := tr.firstUnfinished(); len(u) != 0 {
		t.Fatalf("firstUnfinished = %v, want nothing", u)
	}

	p1, p2 := recs("orders", 1, 10, 11), recs("orders", 2, 20)
	tr.start(p1)
	tr.start(p2)
	if n := tr.doneAll([]*kgo.Record{p1[0], p2[0], p1[1]}); n != 3 {
		t.Fatalf("doneAll across partitions = %d, want 3", n)
	}
	if c1, c2 := commitOf(1), commitOf(2); c1 != 12 || c2 != 21 {
		t.Fatalf("commits = %d, %d, want 12, 21", c1, c2)
	}
}

// trackerModel is the commit rule written as plainly as possible, to check the
// tracker's bookkeeping against.
type trackerModel struct {
	inflight map[tp][]trackedRecord
	commit   map[tp]int64
}

func (m *trackerModel) done(r *kgo.Record) bool {
	p := tp{r.Topic, r.Partition}
	found := false
	for i := range m.inflight[p] {
		if m.inflight[p][i].rec == r && !m.inflight[p][i].done {
			m.inflight[p][i].done, found = true, true
			break
		}
	}
	for len(m.inflight[p]) > 0 && m.inflight[p][0].done {
		m.commit[p] = m.inflight[p][0].rec.Offset + 1
		m.inflight[p] = m.inflight[p][1:]
	}
	return found
}

// Random starts, acknowledgements (single and in chunks, in and out of
// order, repeated), rewinds and revocations: the tracker agrees with the model
// on every commit point, every first unfinished offset and every count.
func TestTrackerAgreesWithASimpleModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		tr := newTracker()
		m := &trackerModel{inflight: map[tp][]trackedRecord{}, commit: map[tp]int64{}}
		next := map[int32]int64{}
		var started []*kgo.Record
		for step := range 60 {
			p := int32(rng.IntN(2))
			switch op := rng.IntN(10); {
			case op < 3: // a poll hands out records
				batch := recs("orders", p, seq(next[p], 1+rng.IntN(5))...)
				next[p] += int64(len(batch))
				tr.start(batch)
				for _, r := range batch {
					m.inflight[tp{"orders", p}] = append(m.inflight[tp{"orders", p}], trackedRecord{rec: r})
				}
				started = append(started, batch...)
			case op < 6 && len(started) > 0: // a chunk is delivered (some of it)
				i := rng.IntN(len(started))
				chunk := slices.Clone(started[i:min(len(started), i+1+rng.IntN(4))])
				if rng.IntN(3) == 0 { // any order, any partitions, repeats
					chunk = append(chunk, started[rng.IntN(len(started))])
					rng.Shuffle(len(chunk), func(i, j int) { chunk[i], chunk[j] = chunk[j], chunk[i] })
				}
				want := 0
				for _, r := range chunk {
					if m.done(r) {
						want++
					}
				}
				if got := tr.doneAll(chunk); got != want {
					t.Fatalf("round %d step %d: doneAll = %d, want %d", round, step, got, want)
				}
			case op < 9 && len(started) > 0: // a parked copy is acknowledged
				r := started[rng.IntN(len(started))]
				if got, want := tr.done(r), m.done(r); got != want {
					t.Fatalf("round %d step %d: done = %v, want %v", round, step, got, want)
				}
			default: // settle rewinds the partition: unfinished records are fetched again
				q := tp{"orders", p}
				want := 0
				for _, r := range m.inflight[q] {
					if !r.done {
						want++
					}
				}
				if len(m.inflight[q]) > 0 {
					next[p] = m.inflight[q][0].rec.Offset
				}
				m.inflight[q] = nil
				if got := tr.forgetUnfinished(q); got != want {
					t.Fatalf("round %d step %d: forgetUnfinished = %d, want %d", round, step, got, want)
				}
			}
			first := tr.firstUnfinished()
			committable := tr.committable()
			for _, p := range []int32{0, 1} {
				q := tp{"orders", p}
				got, gotOK := committable["orders"][p]
				want, wantOK := m.commit[q]
				if gotOK != wantOK || got.Offset != want {
					t.Fatalf("round %d step %d: partition %d committable %v (%v), want %d (%v)", round, step, p, got, gotOK, want, wantOK)
				}
				f, ok := first[q]
				if len(m.inflight[q]) == 0 {
					if ok {
						t.Fatalf("round %d step %d: partition %d first unfinished %d, want none", round, step, p, f)
					}
				} else if !ok || f != m.inflight[q][0].rec.Offset {
					t.Fatalf("round %d step %d: partition %d first unfinished %d (%v), want %d", round, step, p, f, ok, m.inflight[q][0].rec.Offset)
				}
			}
		}
	}
}

func seq(from int64, n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = from + int64(i)
	}
	return out
}
