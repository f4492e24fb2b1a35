package lag

import (
	"testing"
	"time"
)

func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

func TestPartitionEndsEstimateTimeOf(t *testing.T) {
	h := NewPartitionEnds(8)
	h.Observe(100, at(0))
	h.Observe(200, at(10))
	h.Observe(200, at(20)) // idle: extends the 200 point
	h.Observe(300, at(30))

	cases := []struct {
		name   string
		offset int64
		want   time.Time
		ok     bool
	}{
		{"an observed offset", 200, at(10), true},
		{"halfway between two samples", 150, at(5), true},
		{"interpolates from when the end was last seen idle", 250, at(25), true},
		{"the newest offset", 300, at(30), true},
		{"older than the history: its oldest time, a lower bound", 50, at(0), true},
		{"not reached yet", 301, time.Time{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := h.EstimateTimeOf(tc.offset)
			if !got.Equal(tc.want) || ok != tc.ok {
				t.Errorf("got (%v, %v), want (%v, %v)", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestPartitionEndsIsBounded(t *testing.T) {
	h := NewPartitionEnds(4)
	for i := range 1000 {
		h.Observe(int64(i*10), at(i))
	}
	if h.points.len() != 4 {
		t.Fatalf("kept %d points, want 4", h.points.len())
	}
	if got, _ := h.EstimateTimeOf(9985); !got.Equal(at(998).Add(500 * time.Millisecond)) {
		t.Errorf("newest interpolation got %v", got)
	}
	if got, _ := h.EstimateTimeOf(0); !got.Equal(at(996)) {
		t.Errorf("an evicted offset should read as the oldest kept time, got %v", got)
	}
}

func TestPartitionEndsStartsOverWhenTheEndGoesBack(t *testing.T) {
	h := NewPartitionEnds(4)
	h.Observe(1000, at(0))
	h.Observe(2000, at(10))
	h.Observe(5, at(20)) // topic recreated
	if got, ok := h.EstimateTimeOf(5); !ok || !got.Equal(at(20)) {
		t.Errorf("got (%v, %v), want the time of the new log", got, ok)
	}
	h.Observe(10, at(15)) // out of order: ignored
	if _, ok := h.EstimateTimeOf(10); ok {
		t.Errorf("an out-of-order observation was kept")
	}
}

func TestTopicEndsOldestUnconsumed(t *testing.T) {
	te := NewTopicEnds(8)
	te.Observe(sample(0, PartitionOffsets{Partition: 0, End: 0}, PartitionOffsets{Partition: 1, End: 50}, PartitionOffsets{Partition: 9, End: 1}))
	cur := sample(10*time.Second,
		PartitionOffsets{Partition: 0, End: 100, Committed: 49}, // record 49 produced when end reached 50
		PartitionOffsets{Partition: 1, End: 50, Committed: 50},  // no lag
	)
	te.Observe(cur)
	if _, ok := te.partitions[9]; ok {
		t.Errorf("a partition missing from the sample is still remembered")
	}
	oldest := te.OldestUnconsumed(Compute(cur, StartFromEarliest))
	if len(oldest) != 1 || !oldest[0].Equal(at(5)) {
		t.Fatalf("got %v, want only partition 0 at +5s", oldest)
	}
	secs, ok := TimeLagSeconds(Compute(cur, StartFromEarliest), oldest, at(10))
	if secs != 5 || !ok {
		t.Errorf("time lag (%d, %v), want (5, true)", secs, ok)
	}
}
