package scaling

import "time"

// Policy is a pipeline's scaling spec, with the API defaults applied.
type Policy struct {
	// Min and Max bound the replicas; Min may be 0 (scale to zero when idle).
	Min, Max int32

	// LagThreshold is the target lag per replica, in records.
	LagThreshold int64

	// MaxScaleUpStep is how many replicas one decision may add.
	MaxScaleUpStep int32

	// ScaleDownStabilization is how long the lag must have asked for fewer
	// replicas before the pipeline scales down.
	ScaleDownStabilization time.Duration

	// SharedPartitions is true for a share group, whose members all read
	// every partition: the partition count caps nothing, Max does.
	SharedPartitions bool
}

// normalized makes a policy safe to compute with. The API's validation already
// rejects these values; a Policy built without it (a test, a future caller)
// must still never divide by zero, step by nothing, or pin a pipeline with lag
// at zero replicas, so: negative Min is 0, Max is at least 1 and at least Min,
// LagThreshold and MaxScaleUpStep are at least 1, and a negative window is 0.
func (p Policy) normalized() Policy {
	p.Min = max(p.Min, 0)
	p.Max = max(p.Max, p.Min, 1)
	p.LagThreshold = max(p.LagThreshold, 1)
	p.MaxScaleUpStep = max(p.MaxScaleUpStep, 1)
	p.ScaleDownStabilization = max(p.ScaleDownStabilization, 0)
	return p
}

// bounds is the range Desired must fall in.
type bounds struct {
	lo, hi int32
	// byPartitions is true when the partition count, not Max, set hi.
	byPartitions bool
}

// bounds returns [lo, hi] for a topic of the given partition count (0 =
// unknown). The partition count is a hard ceiling: in a consumer group each
// partition goes to one member, so members beyond the partition count sit
// idle and only lengthen every rebalance. It wins even over Min: a Min of 8
// on a 4-partition topic runs 4. hi is at least 1, since Max and a known
// partition count both are. A share group has no such ceiling.
func (p Policy) bounds(partitions int32) bounds {
	b := bounds{hi: p.Max}
	if partitions > 0 && partitions < b.hi && !p.SharedPartitions {
		b.hi, b.byPartitions = partitions, true
	}
	b.lo = min(p.Min, b.hi)
	return b
}

func (b bounds) clamp(n int64) int32 {
	return int32(min(max(n, int64(b.lo)), int64(b.hi)))
}

// Within moves n into the policy's bounds for a topic of the given partition
// count (0 = unknown): the same bounds Decide keeps to. The operator applies it
// to the latest decision when the spec's bounds changed after that decision.
func (p Policy) Within(n, partitions int32) int32 {
	return p.normalized().bounds(partitions).clamp(int64(n))
}
