package lag

import "math"

// Rates returns the ingest and processing rates, in records per second,
// between two successive samples.
//
// Ingest is how fast the end offsets advanced, over the partitions present in
// both samples. Processing is how fast the committed offsets advanced, over
// the partitions with a committed offset in both samples: the first commit of
// a partition has no earlier position to compare with, so it is left out
// rather than counted as a jump from zero. A partition whose offset went
// backwards (topic deleted and recreated, offsets reset by an admin) counts as
// 0 for that interval instead of making a rate negative. ok is false when the
// samples are not in time order (dt <= 0).
func Rates(prev, cur Sample) (ingest, process float64, ok bool) {
	dt := cur.At.Sub(prev.At).Seconds()
	if dt <= 0 {
		return 0, 0, false
	}
	before := make(map[int32]PartitionOffsets, len(prev.Partitions))
	for _, p := range prev.Partitions {
		before[p.Partition] = p
	}
	var produced, committed int64
	for _, c := range cur.Partitions {
		p, found := before[c.Partition]
		if !found {
			continue
		}
		produced = addSaturating(produced, max(c.End-p.End, 0))
		if p.HasCommit() && c.HasCommit() {
			committed = addSaturating(committed, max(c.Committed-p.Committed, 0))
		}
	}
	return float64(produced) / dt, float64(committed) / dt, true
}

// DrainSeconds estimates how long the group needs to consume its lag at the
// current rates: lag / (process - ingest), rounded up. ok is false when the
// group is not catching up (processing no faster than ingest), when the rates
// are not finite, or when the estimate would not fit in an int64; a group with
// no lag has drained (0, true).
func DrainSeconds(totalLag int64, ingest, process float64) (int64, bool) {
	if totalLag <= 0 {
		return 0, true
	}
	net := process - ingest
	if !(net > 0) || math.IsInf(net, 0) {
		return 0, false
	}
	secs := math.Ceil(float64(totalLag) / net)
	if secs >= math.MaxInt64 {
		return 0, false
	}
	return int64(secs), true
}
