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
	msgs  []message
	// byKey maps an ordering key to its lane, per partition of the round.
	byKey map[string]int32
}

// processConcurrently handles one poll's records in Key or Unordered mode:
// up to maxInFlight records at the sink at once, across all partitions, each
// lane (a key of a partition, or a record) one record at a time in offset
// order. It returns the partitions to pause and until when, as
// processPartition does for one partition. Records it doesn't get to stay
// unfinished; settle rewinds each partition to its first unfinished record, so
// a key's later records, never issued while an earlier one was unfinished,
// keep their order when they are read again.
func (w *Worker) processConcurrently(stopCtx, procCtx context.Context, parts []kgo.FetchTopicPartition) map[tp]time.Time {
	pauses := map[tp]time.Time{}
	rs := w.round
	n := 0
	for _, p := range parts {
		n += len(p.Records)
	}
	if cap(rs.msgs) < n {
		rs.msgs = make([]message, n)
	}
	msgs := rs.msgs[:n]
	defer clear(msgs) // no references to fetched records between rounds
	rs.lanes.reset(n)
	i := 0
	now := w.now()
	for _, p := range parts {
		if due := w.planPartition(rs, msgs, &i, p.Records, now); !due.IsZero() {
			pauses[tp{p.Topic, p.Partition}] = due
		}
	}

	maxInFlight := int(w.cfg.Processing.MaxInFlight)
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
	for {
		for !stopped && stopCtx.Err() == nil && inFlight < maxInFlight {
			taken, ids := rs.lanes.take(min(batch, maxInFlight-inFlight), nil, nil)
			if len(taken) == 0 {
				break
			}
			chunk := make([]*message, len(taken))
			for j, m := range taken {
				chunk[j] = &msgs[m]
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
		if inFlight == 0 {
			break
		}
		res := <-results
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
				undelivered[tp{msgs[m].rec.Topic, msgs[m].rec.Partition}] = true
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
	rs.lanes.left(func(m int32) { undelivered[tp{msgs[m].rec.Topic, msgs[m].rec.Partition}] = true })
	if !stopUntil.IsZero() {
		for p := range undelivered {
			pauses[p] = stopUntil
		}
	}
	return pauses
}

// planPartition puts one partition's records into lanes, from msgs[*i] on:
// records that can't be decoded or have no idempotency key are parked at
// once, as in Partition mode; a retry topic's partition stops at its first
// record not yet due, whose due time it returns (the rest is read again then).
func (w *Worker) planPartition(rs *roundState, msgs []message, i *int, recs []*kgo.Record, now time.Time) time.Time {
	if len(recs) == 0 {
		return time.Time{}
	}
	retryAttempts := w.attempts[recs[0].Topic]
	byKey := w.cfg.Processing.Ordering == workerconfig.OrderingKey
	if byKey {
		if rs.byKey == nil {
			rs.byKey = map[string]int32{}
		}
		clear(rs.byKey)
	}
	for _, r := range recs {
		m := &msgs[*i]
		idx := int32(*i)
		*i++
		due, ok := w.prepare(m, r, retryAttempts, now)
		if !due.IsZero() {
			return due
		}
		if !ok {
			continue
		}
		if !byKey {
			rs.lanes.add(rs.lanes.newLane(), idx)
			continue
		}
		rs.lanes.add(rs.laneOf(m), idx)
	}
	return time.Time{}
}

// laneOf returns the lane of m's Kafka record key in this partition, opening
// it for the key's first record; a partition's keyless records are one lane.
// The ordering key is the record key even when the pipeline configures an
// idempotency key: that one tells redeliveries apart and is usually unique per
// record (an event id), so ordering by it would order nothing.
func (rs *roundState) laneOf(m *message) int32 {
	id, ok := rs.byKey[string(m.rec.Key)] // no copy: a lookup only
	if !ok {
		id = rs.lanes.newLane()
		rs.byKey[string(m.rec.Key)] = id
	}
	return id
}
