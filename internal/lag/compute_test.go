package lag

import (
	"math"
	"testing"
	"time"
)

func TestComputeLagPerPartition(t *testing.T) {
	cases := []struct {
		name string
		p    PartitionOffsets
		from StartFrom
		want PartitionLag
	}{
		{"lag is end minus committed",
			PartitionOffsets{Partition: 1, Start: 0, End: 150, Committed: 100}, StartFromEarliest,
			PartitionLag{Partition: 1, Position: 100, End: 150, Lag: 50}},
		{"caught up",
			PartitionOffsets{End: 150, Committed: 150}, StartFromEarliest,
			PartitionLag{Position: 150, End: 150}},
		{"committed ahead of a stale end clamps to 0",
			PartitionOffsets{End: 150, Committed: 160}, StartFromEarliest,
			PartitionLag{Position: 160, End: 150}},
		{"no commit, Earliest: every kept record",
			PartitionOffsets{Start: 40, End: 150, Committed: NoOffset}, StartFromEarliest,
			PartitionLag{Position: 40, End: 150, Lag: 110}},
		{"no commit, Latest: nothing",
			PartitionOffsets{Start: 40, End: 150, Committed: NoOffset}, StartFromLatest,
			PartitionLag{Position: 150, End: 150}},
		{"no commit, unset startFrom is the API default Earliest",
			PartitionOffsets{Start: 0, End: 10, Committed: NoOffset}, "",
			PartitionLag{Position: 0, End: 10, Lag: 10}},
		{"any negative committed offset is no commit",
			PartitionOffsets{Start: 0, End: 10, Committed: -2}, StartFromEarliest,
			PartitionLag{Position: 0, End: 10, Lag: 10}},
		{"committed below the log start counts from the log start",
			PartitionOffsets{Start: 500, End: 600, Committed: 100}, StartFromEarliest,
			PartitionLag{Position: 500, End: 600, Lag: 100}},
		{"empty partition with no commit",
			PartitionOffsets{Committed: NoOffset}, StartFromEarliest,
			PartitionLag{}},
		{"start after end (racing retention) is never negative",
			PartitionOffsets{Start: 20, End: 10, Committed: NoOffset}, StartFromEarliest,
			PartitionLag{Position: 20, End: 10}},
		// Records 0-98 of a committed transaction, its marker at 99: the LSO
		// (the End the operator passes for read_committed) is 100. A consumer
		// whose position moved past the marker commits 100.
		{"transactions: committed equal to the last stable offset is no lag",
			PartitionOffsets{End: 100, Committed: 100}, StartFromEarliest,
			PartitionLag{Position: 100, End: 100}},
		// What Compute can't know: a consumer that committed "last record + 1"
		// sits at 99, in front of the marker, and the lag reads 1.
		{"transactions: a marker left below end reads as one record",
			PartitionOffsets{End: 100, Committed: 99}, StartFromEarliest,
			PartitionLag{Position: 99, End: 100, Lag: 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Compute(Sample{Partitions: []PartitionOffsets{tc.p}}, tc.from)
			if len(got.Partitions) != 1 || got.Partitions[0] != tc.want {
				t.Fatalf("got %+v, want %+v", got.Partitions, tc.want)
			}
			if got.Total != tc.want.Lag || got.MaxPartition != tc.want.Lag {
				t.Errorf("total %d max %d, want %d", got.Total, got.MaxPartition, tc.want.Lag)
			}
		})
	}
}

func TestComputeTotals(t *testing.T) {
	s := Sample{At: time.Unix(0, 0), Partitions: []PartitionOffsets{
		{Partition: 3, End: 1000, Committed: 100},
		{Partition: 0, End: 50, Committed: 50},
		{Partition: 2, End: 30, Committed: NoOffset},
		{Partition: 1, End: 10, Committed: 20},
	}}
	got := Compute(s, StartFromEarliest)
	if got.Total != 930 || got.MaxPartition != 900 || got.PartitionsWithLag != 2 {
		t.Errorf("got total %d max %d with lag %d, want 930 900 2", got.Total, got.MaxPartition, got.PartitionsWithLag)
	}
	for i, p := range got.Partitions {
		if p.Partition != int32(i) {
			t.Fatalf("partitions not sorted: %+v", got.Partitions)
		}
	}
}

func TestComputeTotalSaturatesInsteadOfWrapping(t *testing.T) {
	s := Sample{Partitions: []PartitionOffsets{
		{Partition: 0, End: math.MaxInt64, Committed: 0},
		{Partition: 1, End: math.MaxInt64, Committed: 0},
	}}
	if got := Compute(s, StartFromEarliest).Total; got != math.MaxInt64 {
		t.Errorf("total %d, want MaxInt64", got)
	}
}
