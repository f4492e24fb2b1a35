package lag

import (
	"slices"
	"testing"
	"time"
)

// samples builds one sample every 2s; each row gives (end, committed) per
// partition, partition i at index i.
func samples(members int, rows ...[][2]int64) []Sample {
	out := make([]Sample, 0, len(rows))
	for i, row := range rows {
		s := Sample{At: t0.Add(time.Duration(2*i) * time.Second), Members: members}
		for p, ec := range row {
			s.Partitions = append(s.Partitions, PartitionOffsets{Partition: int32(p), End: ec[0], Committed: ec[1]})
		}
		out = append(out, s)
	}
	return out
}

func repeat(n int, row [][2]int64) [][][2]int64 {
	out := make([][][2]int64, n)
	for i := range out {
		out[i] = row
	}
	return out
}

func TestAssess(t *testing.T) {
	stuckRow := [][2]int64{{100, 40}, {50, 50}, {10, 10}, {70, 60}}
	cases := []struct {
		name      string
		samples   []Sample
		k         int
		stalled   []int32
		stopped   bool
		evaluated bool
		message   string
	}{
		{
			name:      "lag with committed offsets frozen stalls those partitions",
			samples:   samples(2, repeat(5, stuckRow)...),
			k:         5,
			stalled:   []int32{0, 3},
			evaluated: true,
			message:   "partitions 0, 3 have lag and their committed offsets have not moved in 5 samples (8s)",
		},
		{
			name: "catching up with lag is healthy",
			samples: samples(2,
				[][2]int64{{1000, 100}}, [][2]int64{{1100, 300}}, [][2]int64{{1200, 500}},
				[][2]int64{{1300, 700}}, [][2]int64{{1400, 900}}),
			k:         5,
			evaluated: true,
		},
		{
			name:    "fewer samples than K: no stall verdict",
			samples: samples(2, repeat(4, stuckRow)...),
			k:       5,
		},
		{
			name: "a commit anywhere in the window is progress",
			samples: samples(2,
				[][2]int64{{100, 40}}, [][2]int64{{100, 40}}, [][2]int64{{100, 41}},
				[][2]int64{{100, 41}}, [][2]int64{{100, 41}}),
			k:         5,
			evaluated: true,
		},
		{
			name: "lag that came and went is not a stall",
			samples: samples(2,
				[][2]int64{{40, 40}}, [][2]int64{{100, 40}}, [][2]int64{{100, 40}},
				[][2]int64{{100, 40}}, [][2]int64{{100, 40}}),
			k:         5,
			evaluated: true,
		},
		{
			name: "only the last K samples count",
			samples: samples(2,
				[][2]int64{{100, 0}}, [][2]int64{{100, 40}}, [][2]int64{{100, 40}}, [][2]int64{{100, 40}}),
			k:         3,
			stalled:   []int32{0},
			evaluated: true,
			message:   "partition 0 has lag and its committed offset has not moved in 3 samples (4s)",
		},
		{
			name:      "never committed with lag from Earliest is a stall",
			samples:   samples(1, repeat(3, [][2]int64{{100, NoOffset}})...),
			k:         3,
			stalled:   []int32{0},
			evaluated: true,
			message:   "partition 0 has lag and its committed offset has not moved in 3 samples (4s)",
		},
		{
			name:      "no members and lag: stopped, not stalled",
			samples:   samples(0, repeat(5, stuckRow)...),
			k:         5,
			stopped:   true,
			evaluated: true,
			message:   "the consumer group has no members and a lag of 70 records",
		},
		{
			name:    "stopped needs only the latest sample",
			samples: samples(0, [][2]int64{{100, 40}}),
			k:       5,
			stopped: true,
			message: "the consumer group has no members and a lag of 60 records",
		},
		{
			name:      "no members and no lag (scaled to zero) is fine",
			samples:   samples(0, repeat(5, [][2]int64{{100, 100}})...),
			k:         5,
			evaluated: true,
		},
		{
			name:    "K below 2 gives no stall verdict",
			samples: samples(1, repeat(3, stuckRow)...),
			k:       1,
		},
		{
			name:    "no samples",
			samples: nil,
			k:       5,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := Assess(tc.samples, tc.k, StartFromEarliest)
			if !slices.Equal(h.Stalled, tc.stalled) || h.Stopped != tc.stopped || h.Evaluated != tc.evaluated {
				t.Errorf("got stalled %v stopped %v evaluated %v, want %v %v %v",
					h.Stalled, h.Stopped, h.Evaluated, tc.stalled, tc.stopped, tc.evaluated)
			}
			if got := h.Message(); got != tc.message {
				t.Errorf("message %q, want %q", got, tc.message)
			}
			if h.Healthy() != (tc.message == "") {
				t.Errorf("Healthy() = %v with message %q", h.Healthy(), h.Message())
			}
		})
	}
}

func TestAssessIgnoresPartitionsMissingFromTheWindow(t *testing.T) {
	ss := samples(1, repeat(3, [][2]int64{{100, 40}})...)
	ss[2].Partitions = append(ss[2].Partitions, PartitionOffsets{Partition: 1, End: 100, Committed: 0})
	if h := Assess(ss, 3, StartFromEarliest); !slices.Equal(h.Stalled, []int32{0}) {
		t.Errorf("stalled %v, want only partition 0", h.Stalled)
	}
}

func TestAssessMembersMustBePresentThroughTheWindow(t *testing.T) {
	ss := samples(1, repeat(3, [][2]int64{{100, 40}})...)
	ss[0].Members = 0 // the group was just starting
	if h := Assess(ss, 3, StartFromEarliest); len(h.Stalled) != 0 {
		t.Errorf("stalled %v while the group had just got members", h.Stalled)
	}
}

func TestHealthMessageSummarisesManyPartitions(t *testing.T) {
	h := Health{Stalled: []int32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, Samples: 5, Span: 10 * time.Second}
	want := "partitions 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and 2 more have lag and their committed offsets have not moved in 5 samples (10s)"
	if got := h.Message(); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestWindowHealth(t *testing.T) {
	w := NewWindow(3)
	for _, s := range samples(1, repeat(4, [][2]int64{{100, 40}})...) {
		w.Add(s)
	}
	if h := w.Health(StartFromEarliest); !slices.Equal(h.Stalled, []int32{0}) || h.Samples != 3 {
		t.Errorf("got %+v", h)
	}
}
