package demo

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// loadProfile is the load generator's schedule: a steady rate with a spike in
// the middle of the run.
type loadProfile struct {
	// Rate is the steady rate per pipeline, records/s.
	Rate float64
	// Spike multiplies the rate during the spike.
	Spike float64
	// Duration is how long records are produced.
	Duration time.Duration
}

// spikeWindow is when the spike runs: an eighth of the run (5 to 20 s),
// centred on its middle.
func (p loadProfile) spikeWindow() (from, to time.Duration) {
	length := min(max(p.Duration/8, 5*time.Second), 20*time.Second)
	mid := p.Duration / 2
	return mid - length/2, mid + length/2
}

// rateAt is the production rate t into the run.
func (p loadProfile) rateAt(t time.Duration) float64 {
	if t < 0 || t >= p.Duration {
		return 0
	}
	if from, to := p.spikeWindow(); t >= from && t < to {
		return p.Rate * max(p.Spike, 1)
	}
	return p.Rate
}

// recordKind is what the generator made a record to be.
type recordKind string

const (
	kindGood recordKind = "good"
	// kindNoKey lacks the event-id header the pipeline takes its idempotency
	// key from: the worker dead-letters it before it reaches the sink.
	kindNoKey recordKind = "poison-no-key"
	// kindMalformed is a value the sink refuses as a bad request (HTTP 400,
	// or invalid JSON for PostgreSQL).
	kindMalformed recordKind = "poison-malformed"
)

// poisonEvery makes one record in poisonEvery a poison pill.
const poisonEvery = 101

// kindOf decides record seq's kind: every poisonEvery-th record is a poison
// pill, alternating between the kinds the sink can show (the log sink takes
// any value, so it only gets records without a key).
func kindOf(seq int64, sinkRefusesMalformed bool) recordKind {
	if seq%poisonEvery != poisonEvery-1 {
		return kindGood
	}
	if sinkRefusesMalformed && (seq/poisonEvery)%2 == 1 {
		return kindMalformed
	}
	return kindNoKey
}

// headerEventID is the header the demo's pipelines take the idempotency key from.
const headerEventID = "event-id"

// demoRecord builds record seq for pipeline (the record key is its id, which
// the DLQ copies keep, so every copy is traceable to what was produced).
func demoRecord(pipeline, topic string, seq int64, kind recordKind, sink string) *kgo.Record {
	id := fmt.Sprintf("%s-%06d", pipeline, seq)
	value := fmt.Sprintf(`{"id":%q,"n":%d,"amount":%d.%02d}`, id, seq, seq%500, seq%100)
	if kind == kindMalformed {
		if sink == sinkPostgres {
			value = fmt.Sprintf(`<order %s: not JSON>`, id)
		} else {
			value = fmt.Sprintf(`{"id":%q,"n":%d,"amount":"twelve"}`, id, seq)
		}
	}
	r := &kgo.Record{Topic: topic, Key: []byte(id), Value: []byte(value),
		Headers: []kgo.RecordHeader{{Key: "content-type", Value: []byte("application/json")}}}
	if kind != kindNoKey {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: headerEventID, Value: []byte(id)})
	}
	return r
}

// producedRecord is one record the broker acknowledged.
type producedRecord struct {
	ID        string
	Pipeline  string
	Kind      recordKind
	Partition int32
	Offset    int64
	At        time.Time
}

// ledger is every record produced, for the summary.
type ledger struct {
	mu          sync.Mutex
	records     []producedRecord
	perPipeline map[string]int64
	failed      atomic.Int64
}

func (l *ledger) add(r producedRecord) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r)
	if l.perPipeline == nil {
		l.perPipeline = map[string]int64{}
	}
	l.perPipeline[r.Pipeline]++
}

// countOf is how many records of pipeline were produced so far.
func (l *ledger) countOf(pipeline string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.perPipeline[pipeline]
}

func (l *ledger) all() []producedRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]producedRecord(nil), l.records...)
}

// loadTarget is one pipeline's topic.
type loadTarget struct{ Pipeline, Topic string }

// generate produces to every target on profile until the run's duration is
// over or ctx ends; only records the broker acknowledged count as produced.
// start is the run's time zero.
func generate(ctx context.Context, cl *kgo.Client, targets []loadTarget, p loadProfile, sink string, start time.Time, l *ledger) {
	const tick = 20 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	refuses := sink != sinkLog
	seq := make([]int64, len(targets))
	due := 0.0
	last := start
	for {
		select {
		case <-ctx.Done():
			_ = cl.Flush(context.Background())
			return
		case now := <-t.C:
			elapsed := now.Sub(start)
			if elapsed >= p.Duration {
				_ = cl.Flush(context.Background())
				return
			}
			due += p.rateAt(elapsed) * now.Sub(last).Seconds()
			last = now
			for ; due >= 1; due-- {
				for i, tg := range targets {
					n := seq[i]
					seq[i]++
					kind := kindOf(n, refuses)
					rec := demoRecord(tg.Pipeline, tg.Topic, n, kind, sink)
					pipeline := tg.Pipeline
					cl.Produce(ctx, rec, func(r *kgo.Record, err error) {
						if err != nil {
							l.failed.Add(1)
							return
						}
						l.add(producedRecord{ID: string(r.Key), Pipeline: pipeline, Kind: kind, Partition: r.Partition, Offset: r.Offset, At: r.Timestamp})
					})
				}
			}
		}
	}
}
