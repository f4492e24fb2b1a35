package worker

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/internal/workerconfig"
)

// roundState is what a Key or Unordered round reuses from round to round.
type roundState struct {
	lanes lanes
	msgs  messageBlocks
	// byKey maps an ordering key to its lane, per partition of the round:
	// a refill's records of a key join the lane of the key's earlier ones.
	byKey map[tp]map[string]int32
}

// refillWindow is how long after its start a round takes more records from
// the client's buffer as its lanes run dry (refill). Rebalances stay blocked
// while a round runs, so this bounds how much longer than its records' own
// time a round holds a rebalance back. (A variable: the refill test widens it
// so that a loaded machine's slow produce still lands inside the round.)
var refillWindow = time.Second

// refillCheck is how often a round whose records are all at the sink looks
// at the client's buffer for a refill (a slow sink returns no result to look
// after).
const refillCheck = 10 * time.Millisecond

// processConcurrently handles one poll's records in Key or Unordered mode:
// up to maxInFlight records at the sink at once, across all partitions, each
// lane (a key of a partition, or a record) one record at a time in offset
// order. It returns the partitions to pause and until when, as
// processPartition does for one partition. Records it doesn't get to stay
// unfinished; settle rewinds each partition to its first unfinished record, so
// a key's later records, never issued while an earlier one was unfinished,
// keep their order when they are read again.
//
// refill, when not nil, returns more records of the same group session
// (records the client already buffered; the tracker has them): the round
// takes them while fewer records are ready to go than maxInFlight (a wave) and
// fewer than maxPollRecords wait in all, for refillWindow, so that a freed
// slot finds a record at once and the round does not end in a partial wave
// followed by a poll while the client holds the next records already (one poll per round held the http
// sink at 54 % of maxInFlight ÷ latency, BENCHMARKS.md). A share group member
// passes nil: its next poll acknowledges what it got before.
func (w *Worker) processConcurrently(stopCtx, procCtx context.Context, parts []kgo.FetchTopicPartition, refill func() []kgo.FetchTopicPartition) map[tp]time.Time {
	pauses := map[tp]time.Time{}
	rs := w.round
	rs.msgs.reset()
	defer rs.msgs.clear() // no references to fetched records between rounds
	rs.lanes.reset()
	for _, byKey := range rs.byKey {
		clear(byKey)
	}
	pending := 0 // planned, not yet taken
	plan := func(parts []kgo.FetchTopicPartition) {
		now := w.now()
		for _, p := range parts {
			at := tp{p.Topic, p.Partition}
			if _, paused := pauses[at]; paused {
				// Behind a retry record not yet due: these stay unfinished
				// and are read again after it.
				continue
			}
			n, due := w.planPartition(rs, at, p.Records, now)
			pending += n
			if !due.IsZero() {
				pauses[at] = due
			}
		}
	}
	plan(parts)
	refillUntil := w.now().Add(refillWindow)

	maxInFlight := int(w.cfg.Processing.MaxInFlight)
	maxPending := int(w.cfg.Consumer.MaxPollRecords)
	batch := w.snk.MaxBatch()
	if batch <= 0 {
		// A sink that takes any batch gets several, so that they overlap.
		batch = max(1, maxInFlight/4)
	}
	type result struct {
		msgs, lanes []int32
		until       time.Time
		ok          bool
		// blocked[j]: lanes[j]'s failed record has no acknowledged copy, so
		// its later records must not overtake it (parked.go).
		blocked []bool
	}
	byKey := w.cfg.Processing.Ordering == workerconfig.OrderingKey
	results := make(chan result)
	inFlight := 0
	stopped := false
	var stopUntil time.Time
	undelivered := map[tp]bool{}
	var refillTick <-chan time.Time // while refills may come: look at the buffer between results too
	if refill != nil {
		t := time.NewTicker(refillCheck)
		defer t.Stop()
		refillTick = t.C
	}
	for {
		for !stopped && stopCtx.Err() == nil && inFlight < maxInFlight {
			taken, ids := rs.lanes.take(min(batch, maxInFlight-inFlight), nil, nil)
			if len(taken) == 0 {
				break
			}
			pending -= len(taken)
			chunk := make([]*message, len(taken))
			for j, m := range taken {
				chunk[j] = rs.msgs.at(m)
			}
			inFlight += len(taken)
			go func() {
				until, ok, copies := w.deliver(procCtx, chunk)
				res := result{msgs: taken, lanes: ids, until: until, ok: ok}
				if byKey && len(copies) > 0 {
					res.blocked = copies.refused(w.parkPatience(), len(ids))
				}
				results <- res
			}()
		}
		refilling := refill != nil && !stopped && stopCtx.Err() == nil && w.now().Before(refillUntil)
		if refilling && rs.lanes.readyCount() < maxInFlight && pending < maxPending {
			if more := refill(); len(more) > 0 {
				plan(more)
				continue
			}
		}
		if inFlight == 0 {
			break
		}
		var res result
		if refilling {
			select {
			case res = <-results:
			case <-refillTick:
				continue
			}
		} else {
			res = <-results
		}
		inFlight -= len(res.msgs)
		for j, id := range res.lanes {
			if res.blocked != nil && res.blocked[j] {
				rs.lanes.stop(id)
				continue
			}
			rs.lanes.done(id)
		}
		if !res.ok {
			for _, m := range res.msgs {
				r := rs.msgs.at(m).rec
				undelivered[tp{r.Topic, r.Partition}] = true
			}
			if !stopped {
				// The breaker is open (or its trial call taken), or the
				// worker is stopping: like a partition in Partition mode,
				// stop issuing; what is at the sink finishes.
				stopped, stopUntil = true, res.until
			}
		}
	}
	if !stopped {
		return pauses
	}
	rs.lanes.left(func(m int32) {
		r := rs.msgs.at(m).rec
		undelivered[tp{r.Topic, r.Partition}] = true
	})
	if !stopUntil.IsZero() {
		for p := range undelivered {
			pauses[p] = stopUntil
		}
	}
	return pauses
}

// planPartition puts records of partition p into lanes and returns how many
// it put there: records that can't be decoded or have no idempotency key are
// parked at once, as in Partition mode; a retry topic's partition stops at its
// first record not yet due, whose due time it returns (the rest is read again
// then).
func (w *Worker) planPartition(rs *roundState, p tp, recs []*kgo.Record, now time.Time) (int, time.Time) {
	if len(recs) == 0 {
		return 0, time.Time{}
	}
	retryAttempts := w.attempts[p.topic]
	var keyLanes map[string]int32
	if w.cfg.Processing.Ordering == workerconfig.OrderingKey {
		if rs.byKey == nil {
			rs.byKey = map[tp]map[string]int32{}
		}
		if keyLanes = rs.byKey[p]; keyLanes == nil {
			keyLanes = map[string]int32{}
			rs.byKey[p] = keyLanes
		}
	}
	planned := 0
	for _, r := range recs {
		idx := rs.msgs.add()
		rs.lanes.grow(rs.msgs.n)
		due, ok := w.prepare(rs.msgs.at(idx), r, retryAttempts, now)
		if !due.IsZero() {
			return planned, due
		}
		if !ok {
			continue
		}
		if keyLanes == nil {
			rs.lanes.add(rs.lanes.newLane(), idx)
		} else if !rs.lanes.add(laneOf(&rs.lanes, keyLanes, r), idx) {
			continue // its key's lane stopped: it stays unfinished, behind that record
		}
		planned++
	}
	return planned, time.Time{}
}

// laneOf returns the lane of r's Kafka record key in its partition (keyLanes),
// opening it for the key's first record; a partition's keyless records are
// one lane. The ordering key is the record key even when the pipeline
// configures an idempotency key: that one tells redeliveries apart and is
// usually unique per record (an event id), so ordering by it would order
// nothing.
func laneOf(l *lanes, keyLanes map[string]int32, r *kgo.Record) int32 {
	id, ok := keyLanes[string(r.Key)] // no copy: a lookup only
	if !ok {
		id = l.newLane()
		keyLanes[string(r.Key)] = id
	}
	return id
}

// messageBlocks holds a round's messages in fixed-size blocks, so that a
// message's address stays the same while a refill adds more (chunks at the
// sink point into them), and the blocks are reused from round to round.
type messageBlocks struct {
	blocks [][]message
	n      int32 // messages in use
}

const messageBlockSize = 512

func (b *messageBlocks) reset() { b.n = 0 }

// add makes room for one more message and returns its index.
func (b *messageBlocks) add() int32 {
	if int(b.n) == len(b.blocks)*messageBlockSize {
		b.blocks = append(b.blocks, make([]message, messageBlockSize))
	}
	b.n++
	return b.n - 1
}

func (b *messageBlocks) at(i int32) *message {
	return &b.blocks[i/messageBlockSize][i%messageBlockSize]
}

// clear drops the references the used messages hold.
func (b *messageBlocks) clear() {
	for i := 0; int32(i*messageBlockSize) < b.n; i++ {
		clear(b.blocks[i][:min(messageBlockSize, int(b.n)-i*messageBlockSize)])
	}
	b.n = 0
}
