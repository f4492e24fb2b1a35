package worker

import (
	"cmp"
	"slices"
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
	// inflight holds the records in fetch order; those before head are
	// finished and only wait to be reused (the slice's memory is kept from poll
	// to poll instead of being allocated again).
	inflight []trackedRecord
	head     int
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
	pt.compact()
	for _, r := range recs {
		pt.inflight = append(pt.inflight, trackedRecord{rec: r})
	}
}

// compact moves the unfinished records to the front of the slice's memory.
func (pt *partitionTrack) compact() {
	if pt.head == 0 {
		return
	}
	n := copy(pt.inflight, pt.inflight[pt.head:])
	clear(pt.inflight[n:]) // no references to finished records
	pt.inflight, pt.head = pt.inflight[:n], 0
}

// unfinished returns the records not yet finished (and those finished out of
// order after the first unfinished one).
func (pt *partitionTrack) unfinished() []trackedRecord { return pt.inflight[pt.head:] }

// doneAll marks records finished under one lock (a delivered chunk: one
// partition's records in fetch order, which makes finding them cheap).
func (t *tracker) doneAll(recs []*kgo.Record) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	var pt *partitionTrack
	var cur tp
	from := 0
	for _, r := range recs {
		if pt == nil || r.Partition != cur.partition || r.Topic != cur.topic {
			if pt != nil {
				pt.advance()
			}
			cur = tp{r.Topic, r.Partition}
			if pt = t.parts[cur]; pt == nil {
				continue // revoked meanwhile; its next owner re-reads
			}
			from = pt.head
		}
		if i := pt.find(r, from); i >= 0 {
			pt.inflight[i].done = true
			from = i + 1
			n++
		}
	}
	if pt != nil {
		pt.advance()
	}
	return n
}

// done marks a record finished and advances the partition's commit point over
// the finished prefix. It reports whether the record was being tracked.
func (t *tracker) done(r *kgo.Record) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	pt := t.parts[tp{r.Topic, r.Partition}]
	if pt == nil {
		return false // the partition was revoked meanwhile; its next owner re-reads
	}
	i := pt.find(r, pt.head)
	if i < 0 {
		return false
	}
	pt.inflight[i].done = true
	pt.advance()
	return true
}

// find returns the index of r among the unfinished records, or -1. It looks
// at index from first (where the next record of an in-order chunk is), then
// searches by offset: a partition's tracked records are in fetch order, so
// their offsets only grow (a rewind forgets the unfinished ones first), and in
// Key and Unordered rounds records finish in any order.
func (pt *partitionTrack) find(r *kgo.Record, from int) int {
	match := func(i int) bool { return pt.inflight[i].rec == r && !pt.inflight[i].done }
	if from >= pt.head && from < len(pt.inflight) && match(from) {
		return from
	}
	u := pt.inflight[pt.head:]
	i, found := slices.BinarySearchFunc(u, r.Offset, func(tr trackedRecord, off int64) int { return cmp.Compare(tr.rec.Offset, off) })
	if found && match(pt.head+i) {
		return pt.head + i
	}
	return -1
}

// advance moves the commit point over the finished prefix.
func (pt *partitionTrack) advance() {
	for pt.head < len(pt.inflight) && pt.inflight[pt.head].done {
		r := pt.inflight[pt.head].rec
		pt.commit, pt.epoch = r.Offset+1, r.LeaderEpoch
		pt.head++
	}
	if pt.head == len(pt.inflight) {
		clear(pt.inflight)
		pt.inflight, pt.head = pt.inflight[:0], 0
	}
}

// firstUnfinished returns, for every partition with unfinished records, the
// offset of the first one: where consumption must resume so that nothing is
// skipped.
func (t *tracker) firstUnfinished() map[tp]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[tp]int64{}
	for p, pt := range t.parts {
		if u := pt.unfinished(); len(u) > 0 {
			out[p] = u[0].rec.Offset
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
	n := pt.countUnfinished()
	clear(pt.inflight)
	pt.inflight, pt.head = pt.inflight[:0], 0
	return n
}

func (pt *partitionTrack) countUnfinished() int {
	n := 0
	for _, r := range pt.unfinished() {
		if !r.done {
			n++
		}
	}
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
				n += pt.countUnfinished()
			}
			delete(t.parts, tp{topic, p})
		}
	}
	return n
}

// pending returns the records not finished yet, by partition in fetch order
// (a share group round handles them again after a pause).
func (t *tracker) pending() []kgo.FetchTopicPartition {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []kgo.FetchTopicPartition
	for p, pt := range t.parts {
		var recs []*kgo.Record
		for _, r := range pt.unfinished() {
			if !r.done {
				recs = append(recs, r.rec)
			}
		}
		if len(recs) > 0 {
			out = append(out, kgo.FetchTopicPartition{Topic: p.topic, FetchPartition: kgo.FetchPartition{Partition: p.partition, Records: recs}})
		}
	}
	slices.SortFunc(out, func(a, b kgo.FetchTopicPartition) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	return out
}

// forgetAll drops every partition (the end of a share group round, whose
// records all have their acknowledgement) and returns how many unfinished
// records there were.
func (t *tracker) forgetAll() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for p, pt := range t.parts {
		n += pt.countUnfinished()
		delete(t.parts, p)
	}
	return n
}
