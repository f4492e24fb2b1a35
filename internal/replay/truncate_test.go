package replay

import (
	"context"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/testkafka"
)

// TestTruncationDeletesOnlyWhatWasSelected: on the fixture's DLQ, partition
// 0 holds the poison pills, 1 and 2 the transient failures. A redrive of the
// pills may delete all of partition 0 and nothing of the others; a redrive
// of the pills since a time or from an offset deletes nothing (the records
// before were not taken); after an interrupted truncation the next one picks up the same
// points.
func TestTruncationDeletesOnlyWhatWasSelected(t *testing.T) {
	ctx := context.Background()
	c := testkafka.New(t)
	f := newDLQ(t, c, "truncate", 300)
	adm := c.Admin(t)
	parts := snapshotOf(t, c, f.dlq, nil, time.Time{})

	since := f.base.Add(150 * time.Millisecond)
	ten := int64(10)
	for _, tc := range []struct {
		name  string
		parts []Partition
		sel   Selection
	}{
		{"since a time", snapshotOf(t, c, f.dlq, nil, since), Selection{Since: since, Classes: []string{"poison"}}},
		{"from offset 10", snapshotOf(t, c, f.dlq, map[int32]OffsetRange{0: {From: &ten}}, time.Time{}), Selection{Classes: []string{"poison"}}},
	} {
		points, err := TruncationPoints(ctx, conn(c), adm, tc.parts, tc.sel)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range points {
			if p.To != p.From {
				t.Errorf("a redrive %s may delete partition %d up to %d: the records before it were not copied", tc.name, p.Partition, p.To)
			}
		}
	}

	pills := Selection{Classes: []string{"poison"}, MaxRedrives: 3}
	points, err := TruncationPoints(ctx, conn(c), adm, parts, pills)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int32]int64{0: 100, 1: 0, 2: 0} // every tenth pill is parked, still selected
	for _, p := range points {
		if p.From != 0 || p.To != want[p.Partition] {
			t.Errorf("partition %d: may delete %d..%d, want 0..%d", p.Partition, p.From, p.To, want[p.Partition])
		}
	}
	n, err := Truncate(ctx, adm, points)
	if err != nil {
		t.Fatal(err)
	}
	if n != 100 {
		t.Errorf("truncated %d offsets, want 100", n)
	}
	starts, err := adm.ListStartOffsets(ctx, f.dlq)
	if err != nil {
		t.Fatal(err)
	}
	for p, w := range want {
		if s, _ := starts.Lookup(f.dlq, p); s.Offset != w {
			t.Errorf("partition %d starts at %d, want %d", p, s.Offset, w)
		}
	}
	again, err := TruncationPoints(ctx, conn(c), adm, parts, pills)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := Truncate(ctx, adm, again); err != nil || n != 0 {
		t.Errorf("truncating again: %d offsets, %v; want none", n, err)
	}
}
