package lag

import (
	"math"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

func sample(at time.Duration, parts ...PartitionOffsets) Sample {
	return Sample{At: t0.Add(at), Partitions: parts, Members: 1}
}

func TestRates(t *testing.T) {
	cases := []struct {
		name            string
		prev, cur       Sample
		ingest, process float64
		ok              bool
	}{
		{"steady flow",
			sample(0, PartitionOffsets{Partition: 0, End: 100, Committed: 50}, PartitionOffsets{Partition: 1, End: 200, Committed: 200}),
			sample(2*time.Second, PartitionOffsets{Partition: 0, End: 300, Committed: 150}, PartitionOffsets{Partition: 1, End: 400, Committed: 300}),
			200, 100, true},
		{"first commit of a partition is not a jump from zero",
			sample(0, PartitionOffsets{Partition: 0, End: 1000, Committed: NoOffset}),
			sample(time.Second, PartitionOffsets{Partition: 0, End: 1000, Committed: 900}),
			0, 0, true},
		{"topic recreated: end went backwards counts as 0",
			sample(0, PartitionOffsets{Partition: 0, End: 1000, Committed: 900}, PartitionOffsets{Partition: 1, End: 10, Committed: 0}),
			sample(time.Second, PartitionOffsets{Partition: 0, End: 5, Committed: 0}, PartitionOffsets{Partition: 1, End: 20, Committed: 5}),
			10, 5, true},
		{"partition only in one sample is ignored",
			sample(0, PartitionOffsets{Partition: 0, End: 0, Committed: 0}),
			sample(time.Second, PartitionOffsets{Partition: 0, End: 10, Committed: 10}, PartitionOffsets{Partition: 7, End: 1e6, Committed: 1e6}),
			10, 10, true},
		{"same time is not a rate",
			sample(time.Second), sample(time.Second), 0, 0, false},
		{"samples out of order",
			sample(2 * time.Second), sample(time.Second), 0, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in, pr, ok := Rates(tc.prev, tc.cur)
			if in != tc.ingest || pr != tc.process || ok != tc.ok {
				t.Errorf("got (%v, %v, %v), want (%v, %v, %v)", in, pr, ok, tc.ingest, tc.process, tc.ok)
			}
		})
	}
}

func TestDrainSeconds(t *testing.T) {
	cases := []struct {
		name            string
		lag             int64
		ingest, process float64
		want            int64
		ok              bool
	}{
		{"no lag has drained", 0, 100, 0, 0, true},
		{"catching up", 1000, 100, 300, 5, true},
		{"rounds up", 1001, 100, 300, 6, true},
		{"keeping pace is not catching up", 1000, 100, 100, 0, false},
		{"falling behind", 1000, 300, 100, 0, false},
		{"stopped", 1000, 0, 0, 0, false},
		{"NaN rate", 1000, math.NaN(), 10, 0, false},
		{"infinite rate", 1000, 0, math.Inf(1), 0, false},
		{"too slow to fit", math.MaxInt64, 0, 1e-9, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := DrainSeconds(tc.lag, tc.ingest, tc.process)
			if got != tc.want || ok != tc.ok {
				t.Errorf("got (%d, %v), want (%d, %v)", got, ok, tc.want, tc.ok)
			}
		})
	}
}
