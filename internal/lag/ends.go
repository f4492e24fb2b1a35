package lag

import "time"

// endPoint is a value the end offset held, from when it was first seen to when
// it was last seen unchanged.
type endPoint struct {
	offset      int64
	first, last time.Time
}

// PartitionEnds remembers when one partition's end offset reached which value,
// so that the time a record was produced can be estimated without fetching
// it. It keeps a fixed number of distinct end offsets: an idle partition
// extends the newest point instead of using up the ring, so the history spans
// capacity changes of the end offset, however long the quiet periods between.
type PartitionEnds struct {
	points ring[endPoint]
}

// NewPartitionEnds returns a history of at most capacity distinct end
// offsets (at least 2 are needed to interpolate).
func NewPartitionEnds(capacity int) *PartitionEnds {
	return &PartitionEnds{points: newRing[endPoint](max(capacity, 2))}
}

// Observe records that the end offset was end at time at. Observations must
// come in time order; an older one is ignored. An end offset lower than the
// last one means the log is not the same any more (topic recreated), so the
// history starts over.
func (h *PartitionEnds) Observe(end int64, at time.Time) {
	if h.points.len() > 0 {
		newest := h.points.newest()
		switch {
		case at.Before(newest.last):
			return
		case end == newest.offset:
			newest.last = at
			return
		case end < newest.offset:
			h.points.reset()
		}
	}
	h.points.push(endPoint{offset: end, first: at, last: at})
}

// EstimateTimeOf returns when the end offset first reached offset, by linear
// interpolation between the last time the end was seen below it and the first
// time it was seen at or above it. The record at offset o was produced when the
// end reached o+1.
//
// An offset the end had already reached before the oldest point returns that
// point's time: the true time is earlier, so a lag computed from it is a lower
// bound. ok is false when the history is empty or the end has not reached
// offset yet.
func (h *PartitionEnds) EstimateTimeOf(offset int64) (time.Time, bool) {
	for i := range h.points.len() {
		p := h.points.at(i)
		if p.offset < offset {
			continue
		}
		if i == 0 || p.offset == offset {
			return p.first, true
		}
		prev := h.points.at(i - 1)
		span := p.first.Sub(prev.last)
		frac := float64(offset-prev.offset) / float64(p.offset-prev.offset)
		return prev.last.Add(time.Duration(frac * float64(span))), true
	}
	return time.Time{}, false
}

// TopicEnds is a PartitionEnds per partition of a topic.
type TopicEnds struct {
	capacity   int
	partitions map[int32]*PartitionEnds
}

// NewTopicEnds returns a history that keeps up to capacity distinct end
// offsets per partition.
func NewTopicEnds(capacity int) *TopicEnds {
	return &TopicEnds{capacity: capacity, partitions: map[int32]*PartitionEnds{}}
}

// Observe records the end offset of every partition of a sample. Partitions
// missing from the sample are forgotten, so the history stays as large as the
// topic; pass complete samples only.
func (t *TopicEnds) Observe(s Sample) {
	seen := make(map[int32]bool, len(s.Partitions))
	for _, p := range s.Partitions {
		seen[p.Partition] = true
		h, ok := t.partitions[p.Partition]
		if !ok {
			h = NewPartitionEnds(t.capacity)
			t.partitions[p.Partition] = h
		}
		h.Observe(p.End, s.At)
	}
	for id := range t.partitions {
		if !seen[id] {
			delete(t.partitions, id)
		}
	}
}

// EstimateTimeOf is PartitionEnds.EstimateTimeOf for one partition.
func (t *TopicEnds) EstimateTimeOf(partition int32, offset int64) (time.Time, bool) {
	h, ok := t.partitions[partition]
	if !ok {
		return time.Time{}, false
	}
	return h.EstimateTimeOf(offset)
}

// OldestUnconsumed estimates, for every partition with lag, when the record at
// the group's position was produced: when the end offset reached Position+1.
// Partitions the history can't place are left out.
func (t *TopicEnds) OldestUnconsumed(l Lag) OldestUnconsumed {
	out := OldestUnconsumed{}
	for _, p := range l.Partitions {
		if p.Lag <= 0 {
			continue
		}
		if at, ok := t.EstimateTimeOf(p.Partition, p.Position+1); ok {
			out[p.Partition] = at
		}
	}
	return out
}
