package worker

import (
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// tp is a topic partition.
type tp struct {
	topic     string
	partition int32
}

// tracker is the commit rule, in one place: a partition's offset is committable
// only up to the last record before which every record is done. A record is
// done when the sink acknowledged it or its copy in a retry or dead-letter topic
// was acknowledged. Records finish out of order (a retry copy's ack can arrive
// after later records were delivered), so the tracker keeps each partition's
// in-flight records in fetch order and advances over the finished prefix.
type tracker struct {
	mu    sync.Mutex
	parts map[tp]*partitionTrack
}

type partitionTrack struct {
	inflight []trackedRecord // in fetch order
	// commit is the next offset to commit (-1: nothing finished yet), with the
	// leader epoch of the record that produced it.
	commit     int64
	epoch      int32
	lastCommit int64 // what was last handed out for committing
}

// trackedRecord is matched by identity, not offset: after a rewind the same
// offset is fetched again as a new record, and a late acknowledgement for the
// old one must not finish the new one.
type trackedRecord struct {
	rec  *kgo.Record
	done bool
}

func newTracker() *tracker { return &tracker{parts: map[tp]*partitionTrack{}} }

func (t *tracker) part(p tp) *partitionTrack {
	pt := t.parts[p]
	if pt == nil {
		pt = &partitionTrack{commit: -1, lastCommit: -1}
		t.parts[p] = pt
	}
	return pt
}

// start registers records (of one partition, in fetch order) before any of them
// is handled.
func (t *tracker) start(recs []*kgo.Record) {
	if len(recs) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	pt := t.part(tp{recs[0].Topic, recs[0].Partition})
	for _, r := range recs {
		pt.inflight = append(pt.inflight, trackedRecord{rec: r})
	}
}

// doneAll marks records finished under one lock (a delivered chunk).
func (t *tracker) doneAll(recs []*kgo.Record) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, r := range recs {
		if t.doneLocked(r) {
			n++
		}
	}
	return n
}

// done marks a record finished and advances the partition's commit point over
// the finished prefix. It reports whether the record was being tracked.
func (t *tracker) done(r *kgo.Record) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.doneLocked(r)
}

func (t *tracker) doneLocked(r *kgo.Record) bool {
	pt := t.parts[tp{r.Topic, r.Partition}]
	if pt == nil {
		return false // the partition was revoked meanwhile; its next owner re-reads
	}
	found := false
	for i := range pt.inflight {
		if pt.inflight[i].rec == r && !pt.inflight[i].done {
			pt.inflight[i].done, found = true, true
			break
		}
	}
	n := 0
	for n < len(pt.inflight) && pt.inflight[n].done {
		pt.commit, pt.epoch = pt.inflight[n].rec.Offset+1, pt.inflight[n].rec.LeaderEpoch
		n++
	}
	pt.inflight = pt.inflight[n:]
	return found
}

// firstUnfinished returns, for every partition with unfinished records, the
// offset of the first one: where consumption must resume so that nothing is
// skipped.
func (t *tracker) firstUnfinished() map[tp]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[tp]int64{}
	for p, pt := range t.parts {
		if len(pt.inflight) > 0 {
			out[p] = pt.inflight[0].rec.Offset
		}
	}
	return out
}

// forgetUnfinished drops a partition's unfinished records (they will be fetched
// again from firstUnfinished), keeps its commit point, and returns how many
// unfinished records it dropped.
func (t *tracker) forgetUnfinished(p tp) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	pt := t.parts[p]
	if pt == nil {
		return 0
	}
	n := 0
	for _, r := range pt.inflight {
		if !r.done {
			n++
		}
	}
	pt.inflight = nil
	return n
}

// committable returns the offsets that moved since the last call, in the form
// kgo commits.
func (t *tracker) committable() map[string]map[int32]kgo.EpochOffset {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[string]map[int32]kgo.EpochOffset{}
	for p, pt := range t.parts {
		if pt.commit < 0 || pt.commit == pt.lastCommit {
			continue
		}
		if out[p.topic] == nil {
			out[p.topic] = map[int32]kgo.EpochOffset{}
		}
		out[p.topic][p.partition] = kgo.EpochOffset{Epoch: pt.epoch, Offset: pt.commit}
	}
	return out
}

// resumeAt sets a partition's commit point to offset, when that is further:
// the partition resumes there (offsets stored outside Kafka), and Kafka's
// commit is to catch up.
func (t *tracker) resumeAt(p tp, offset int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if pt := t.part(p); offset > pt.commit {
		pt.commit, pt.epoch = offset, -1
	}
}

// uncommitted reports whether some partition's commit point moved past what
// was last committed.
func (t *tracker) uncommitted() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, pt := range t.parts {
		if pt.commit >= 0 && pt.commit != pt.lastCommit {
			return true
		}
	}
	return false
}

// committed records that offsets were committed (after the broker said so).
func (t *tracker) committed(offsets map[string]map[int32]kgo.EpochOffset) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for topic, ps := range offsets {
		for p, eo := range ps {
			if pt := t.parts[tp{topic, p}]; pt != nil && eo.Offset > pt.lastCommit {
				pt.lastCommit = eo.Offset
			}
		}
	}
}

// committableFor is committable restricted to some partitions (revocation).
func (t *tracker) committableFor(parts map[string][]int32) map[string]map[int32]kgo.EpochOffset {
	all := t.committable()
	out := map[string]map[int32]kgo.EpochOffset{}
	for topic, ps := range parts {
		for _, p := range ps {
			if eo, ok := all[topic][p]; ok {
				if out[topic] == nil {
					out[topic] = map[int32]kgo.EpochOffset{}
				}
				out[topic][p] = eo
			}
		}
	}
	return out
}

// drop forgets partitions this member no longer owns and returns how many
// unfinished records they had.
func (t *tracker) drop(parts map[string][]int32) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for topic, ps := range parts {
		for _, p := range ps {
			if pt := t.parts[tp{topic, p}]; pt != nil {
				for _, r := range pt.inflight {
					if !r.done {
						n++
					}
				}
			}
			delete(t.parts, tp{topic, p})
		}
	}
	return n
}
