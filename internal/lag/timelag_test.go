package lag

import (
	"testing"
	"time"
)

func TestTimeLagSeconds(t *testing.T) {
	now := t0.Add(time.Hour)
	lagging := Lag{Partitions: []PartitionLag{
		{Partition: 0, Lag: 10},
		{Partition: 1, Lag: 0},
		{Partition: 2, Lag: 5},
	}}
	cases := []struct {
		name   string
		l      Lag
		oldest OldestUnconsumed
		want   int64
		ok     bool
	}{
		{"max over lagging partitions",
			lagging, OldestUnconsumed{0: now.Add(-30 * time.Second), 2: now.Add(-90 * time.Second)}, 90, true},
		{"a partition without lag contributes nothing, even with an old record",
			lagging, OldestUnconsumed{0: now.Add(-30 * time.Second), 1: now.Add(-time.Hour)}, 30, true},
		{"no lag at all",
			Lag{Partitions: []PartitionLag{{Partition: 0}}}, nil, 0, true},
		{"lag but no timestamps",
			lagging, OldestUnconsumed{1: now}, 0, false},
		{"timestamp in the future counts as 0",
			lagging, OldestUnconsumed{0: now.Add(time.Minute)}, 0, true},
		{"rounds down to whole seconds",
			lagging, OldestUnconsumed{0: now.Add(-1500 * time.Millisecond)}, 1, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := TimeLagSeconds(tc.l, tc.oldest, now)
			if got != tc.want || ok != tc.ok {
				t.Errorf("got (%d, %v), want (%d, %v)", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestPartitionTimeLag(t *testing.T) {
	now := t0.Add(time.Hour)
	lagging := Lag{Partitions: []PartitionLag{
		{Partition: 0, Lag: 10},
		{Partition: 1, Lag: 0},
		{Partition: 2, Lag: 5},
		{Partition: 3, Lag: 1},
	}}
	got := PartitionTimeLag(lagging, OldestUnconsumed{
		0: now.Add(-30 * time.Second), // lagging: 30 s
		1: now.Add(-time.Hour),        // no lag: 0 whatever its record's age
		2: now.Add(time.Minute),       // clock skew: 0
		// 3: lagging, time unknown: absent
	}, now)
	want := map[int32]int64{0: 30, 1: 0, 2: 0}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for p, w := range want {
		if got[p] != w {
			t.Errorf("partition %d: %d s, want %d", p, got[p], w)
		}
	}
}
