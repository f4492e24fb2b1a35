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
