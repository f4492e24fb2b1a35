package worker

import (
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
