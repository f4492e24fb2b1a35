package lag

import (
	"testing"
	"time"
)

func TestWindowKeepsTheLastK(t *testing.T) {
	w := NewWindow(3)
	if _, ok := w.Latest(); ok {
		t.Fatal("empty window has a latest sample")
	}
	for i := range 5 {
		w.Add(sample(time.Duration(i)*time.Second, PartitionOffsets{End: int64(i)}))
	}
	got := w.Samples()
	if len(got) != 3 || w.Len() != 3 || w.Size() != 3 {
		t.Fatalf("kept %d samples, want 3", len(got))
	}
	for i, s := range got {
		if want := int64(i + 2); s.Partitions[0].End != want {
			t.Errorf("sample %d has end %d, want %d (oldest first)", i, s.Partitions[0].End, want)
		}
	}
	latest, _ := w.Latest()
	prev, _ := w.Previous()
	if latest.Partitions[0].End != 4 || prev.Partitions[0].End != 3 {
		t.Errorf("latest %d previous %d, want 4 and 3", latest.Partitions[0].End, prev.Partitions[0].End)
	}
}

func TestWindowDropsOutOfOrderSamples(t *testing.T) {
	w := NewWindow(3)
	if !w.Add(sample(2 * time.Second)) {
		t.Fatal("first sample refused")
	}
	if w.Add(sample(2*time.Second)) || w.Add(sample(time.Second)) {
		t.Error("a sample not newer than the latest was kept")
	}
	if w.Len() != 1 {
		t.Errorf("len %d, want 1", w.Len())
	}
}

func TestWindowCopiesPartitions(t *testing.T) {
	w := NewWindow(2)
	parts := []PartitionOffsets{{End: 1}}
	w.Add(Sample{At: t0, Partitions: parts})
	parts[0].End = 99 // the operator reuses its buffer
	if s, _ := w.Latest(); s.Partitions[0].End != 1 {
		t.Errorf("window sees the caller's later write: end %d", s.Partitions[0].End)
	}
}

func TestWindowRates(t *testing.T) {
	w := NewWindow(5)
	w.Add(sample(0, PartitionOffsets{End: 0, Committed: 0}))
	if _, _, ok := w.Rates(); ok {
		t.Error("rates from one sample")
	}
	w.Add(sample(2*time.Second, PartitionOffsets{End: 100, Committed: 50}))
	if in, pr, ok := w.Rates(); in != 50 || pr != 25 || !ok {
		t.Errorf("got (%v, %v, %v), want (50, 25, true)", in, pr, ok)
	}
}
