package lag

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Health is the verdict on a consumer group from its recent samples, in the
// manner of LinkedIn's Burrow: it looks at whether offsets move, not at lag
// thresholds. A group far behind but committing is catching up and healthy; a
// group with a little lag that never commits is stuck. Thresholds can't tell
// those apart, and every topic would need its own.
type Health struct {
	// Stalled are the partitions, sorted, that had lag in every sample of the
	// window while their committed offset did not move and the group had
	// members: someone owns them and makes no progress (a poison record, a
	// hung sink, a paused partition that was never resumed).
	Stalled []int32

	// Stopped is true when the latest sample has lag and the group has no
	// members: nobody is consuming at all.
	Stopped bool

	// Evaluated is false when the window held fewer than K samples, or K was
	// below 2: there is not enough evidence for a stall verdict, so Stalled is
	// empty. Stopped needs only the latest sample and is always evaluated.
	Evaluated bool

	// Samples is the number of samples the verdict looked at, and Span the time
	// between the first and the last of them.
	Samples int
	Span    time.Duration

	// TotalLag is the lag of the latest sample.
	TotalLag int64
}

// Healthy reports whether the group is neither stopped nor stalled.
func (h Health) Healthy() bool { return !h.Stopped && len(h.Stalled) == 0 }

// Assess judges the last k of samples (oldest first). A partition is stalled
// when it has lag in each of the k samples, its committed offset is the same
// in all of them (a partition that was never committed counts as not moving),
// and the group has members in all of them. Partitions missing from any of the
// samples (a partition just added) are not judged.
func Assess(samples []Sample, k int, from StartFrom) Health {
	if len(samples) == 0 {
		return Health{}
	}
	latest := samples[len(samples)-1]
	latestLag := Compute(latest, from)
	h := Health{
		Stopped:  latest.Members == 0 && latestLag.Total > 0,
		TotalLag: latestLag.Total,
	}
	if k < 2 || len(samples) < k {
		h.Samples = len(samples)
		h.Span = latest.At.Sub(samples[0].At)
		return h
	}
	window := samples[len(samples)-k:]
	h.Evaluated = true
	h.Samples = k
	h.Span = latest.At.Sub(window[0].At)
	h.Stalled = stalled(window, from)
	return h
}

// stalled returns the partitions that lagged without their committed offset
// moving in every sample of window.
func stalled(window []Sample, from StartFrom) []int32 {
	type track struct {
		committed int64
		seen      int
		moved     bool
	}
	tracks := map[int32]*track{}
	for _, s := range window {
		if s.Members == 0 {
			return nil
		}
		for _, p := range s.Partitions {
			t, ok := tracks[p.Partition]
			if !ok {
				t = &track{committed: p.Committed}
				tracks[p.Partition] = t
			}
			if partitionLag(p, from).Lag == 0 || p.Committed != t.committed {
				t.moved = true
			}
			t.seen++
		}
	}
	var out []int32
	for id, t := range tracks {
		if t.seen == len(window) && !t.moved {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// maxNamed is how many partitions a message names before summarising the rest.
const maxNamed = 10

// Message is a sentence for a condition or an Event that says what is wrong,
// naming the partitions and the time the evidence covers; it is empty when
// the group is healthy.
func (h Health) Message() string {
	switch {
	case h.Stopped:
		return fmt.Sprintf("the consumer group has no members and a lag of %d records", h.TotalLag)
	case len(h.Stalled) == 1:
		return fmt.Sprintf("partition %d has lag and its committed offset has not moved in %d samples (%s)",
			h.Stalled[0], h.Samples, roundSpan(h.Span))
	case len(h.Stalled) > 1:
		return fmt.Sprintf("partitions %s have lag and their committed offsets have not moved in %d samples (%s)",
			namePartitions(h.Stalled), h.Samples, roundSpan(h.Span))
	}
	return ""
}

func namePartitions(ids []int32) string {
	named := make([]string, 0, min(len(ids), maxNamed))
	for _, id := range ids[:min(len(ids), maxNamed)] {
		named = append(named, fmt.Sprint(id))
	}
	s := strings.Join(named, ", ")
	if rest := len(ids) - len(named); rest > 0 {
		s += fmt.Sprintf(" and %d more", rest)
	}
	return s
}

// roundSpan keeps a duration readable: whole seconds once it is a second or
// more.
func roundSpan(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Second)
	}
	return d
}
