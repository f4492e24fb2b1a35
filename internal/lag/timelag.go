package lag

import "time"

// OldestUnconsumed maps a partition to the time its oldest unconsumed record
// (the record at PartitionLag.Position) was produced. The operator fills it
// either by fetching that record and reading its timestamp, or, when fetching
// is not possible, from the end-offset history (TopicEnds.OldestUnconsumed).
type OldestUnconsumed map[int32]time.Time

// TimeLagSeconds estimates how many seconds the group is behind: for each
// partition with lag, now minus the time its oldest unconsumed record was
// produced, and the largest of those. Record counts say little about urgency
// (1000 records is nothing on a busy topic and an hour on a quiet one); time
// lag is what an alert on "the pipeline is N minutes behind" needs.
//
// Partitions without lag contribute 0. A lagging partition missing from oldest
// is skipped, so the result is a lower bound when some are missing; ok is false
// only when some partition lags and none of them has a time. A record
// timestamp in the future (producer clock skew) counts as 0.
func TimeLagSeconds(l Lag, oldest OldestUnconsumed, now time.Time) (seconds int64, ok bool) {
	per := PartitionTimeLag(l, oldest, now)
	lagging, known := 0, 0
	for _, p := range l.Partitions {
		if p.Lag <= 0 {
			continue
		}
		lagging++
		if s, found := per[p.Partition]; found {
			known++
			seconds = max(seconds, s)
		}
	}
	if lagging > 0 && known == 0 {
		return 0, false
	}
	return seconds, true
}

// PartitionTimeLag is the time lag of each partition, in whole seconds: 0 for
// a partition without lag, now minus its oldest unconsumed record's time for
// a lagging one (0 when that time is in the future). A lagging partition
// whose oldest record's time is unknown is absent: no made-up figure.
func PartitionTimeLag(l Lag, oldest OldestUnconsumed, now time.Time) map[int32]int64 {
	out := make(map[int32]int64, len(l.Partitions))
	for _, p := range l.Partitions {
		if p.Lag <= 0 {
			out[p.Partition] = 0
			continue
		}
		if at, found := oldest[p.Partition]; found {
			out[p.Partition] = int64(max(0, now.Sub(at)) / time.Second)
		}
	}
	return out
}
