package lag

import (
	"cmp"
	"math"
	"slices"
)

// PartitionLag is the lag of one partition.
type PartitionLag struct {
	Partition int32

	// Position is the offset of the next record the group will read: the
	// committed offset, or where the startFrom policy puts a group with no
	// commit. The record at Position is the oldest unconsumed one.
	Position int64

	// End is the end offset the lag was measured to.
	End int64

	// Lag is End - Position, never negative.
	Lag int64
}

// Lag is the lag of a consumer group over all partitions of its topic.
type Lag struct {
	// Partitions, sorted by partition.
	Partitions []PartitionLag

	Total             int64
	MaxPartition      int64
	PartitionsWithLag int
}

// Compute measures the lag of every partition of a sample.
//
// Lag is End - Committed. It is never negative: a committed offset can be ahead
// of an end offset that was read a moment earlier, and a negative lag would
// cancel real lag elsewhere in the total. A partition with no committed offset
// is measured from where the group will start: from the log start with
// Earliest (every kept record is still to be read), and 0 with Latest (the
// group will skip to the end). A committed offset below the log start (retention
// deleted records the group never read) is measured from the log start, since
// the deleted records will never be consumed. An unknown or empty startFrom is
// treated as Earliest, the API default.
//
// Transactions. Records of a transaction still open sit between the last
// stable offset (LSO) and the high watermark; a read_committed consumer cannot
// read them yet. Measured to the high watermark they would count as lag and
// scale the pipeline up for records nobody can consume, so for a
// read_committed consumer the operator must pass the LSO as End: kadm's
// ListCommittedOffsets (a ListOffsets request with read_committed isolation;
// despite its name it has nothing to do with the group's commits, which come
// from FetchOffsets), not ListEndOffsets, which returns the high watermark.
// Each finished transaction
// also ends with a control record (the commit or abort marker) that takes an
// offset but is never delivered. A consumer whose position has moved past the
// marker commits the LSO and shows no lag; one that commits "last record
// delivered + 1" stops one below the end when the marker is the last thing in
// the partition. That residual lag of 1 is indistinguishable here from one
// real unread record: Compute takes End as given and reports 1.
func Compute(s Sample, from StartFrom) Lag {
	out := Lag{Partitions: make([]PartitionLag, 0, len(s.Partitions))}
	for _, p := range s.Partitions {
		pl := partitionLag(p, from)
		out.Partitions = append(out.Partitions, pl)
		out.Total = addSaturating(out.Total, pl.Lag)
		out.MaxPartition = max(out.MaxPartition, pl.Lag)
		if pl.Lag > 0 {
			out.PartitionsWithLag++
		}
	}
	slices.SortFunc(out.Partitions, func(a, b PartitionLag) int { return cmp.Compare(a.Partition, b.Partition) })
	return out
}

func partitionLag(p PartitionOffsets, from StartFrom) PartitionLag {
	end := max(p.End, 0)
	start := max(p.Start, 0)
	var pos int64
	switch {
	case p.HasCommit():
		pos = max(p.Committed, start)
	case from == StartFromLatest:
		pos = end
	default:
		pos = start
	}
	return PartitionLag{Partition: p.Partition, Position: pos, End: end, Lag: max(end-pos, 0)}
}

// addSaturating adds two non-negative numbers without wrapping around: a
// garbage offset must not turn the total lag negative.
func addSaturating(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
