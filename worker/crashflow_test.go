package worker

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// flow writes records 0, 1, ... to "orders" in the background while the
// workers crash, pausing while the group lags by more than flowMaxBacklog, so
// there is always work in flight and the drain stays short.
type flow struct {
	r      *crashRun
	n      atomic.Int64 // records 0..n-1 are written
	stopCh chan struct{}
	done   chan struct{}
	once   sync.Once
}

func startFlow(r *crashRun) *flow {
	f := &flow{r: r, stopCh: make(chan struct{}), done: make(chan struct{})}
	go f.loop()
	return f
}

func (f *flow) loop() {
	defer close(f.done)
	// The tail is written after the rollout; flaky records need their
	// sequences, made for wl.total records.
	for from := 0; from+flowChunk <= f.r.plan.wl.total-tailRecords; from += flowChunk {
		for f.backlog() > flowMaxBacklog {
			if !f.wait(flowPause) {
				return
			}
		}
		if err := f.r.produce(from, from+flowChunk); err != nil {
			f.r.t.Errorf("the flow could not write records %d-%d: %v", from, from+flowChunk, err)
			return
		}
		f.n.Store(int64(from + flowChunk))
		if !f.wait(flowPause) {
			return
		}
	}
}

func (f *flow) wait(d time.Duration) bool {
	select {
	case <-f.stopCh:
		return false
	case <-time.After(d):
		return true
	}
}

// backlog is how far the group's commits of the source topic lag its end.
func (f *flow) backlog() int64 {
	b := f.r.b
	var lag int64
	for _, p := range b.cluster.PartitionInfos(b.name("orders")) {
		lag += p.HighWatermark
	}
	if gi := b.cluster.GroupInfo(b.group); gi != nil {
		for _, c := range gi.Commits[b.name("orders")] {
			lag -= c.Offset
		}
	}
	return lag
}

// halt stops the flow and waits for its last produce.
func (f *flow) halt() {
	f.once.Do(func() { close(f.stopCh) })
	<-f.done
}

func (f *flow) written() int { return int(f.n.Load()) }

// produce writes records from..to-1 (values from the workload) with Kafka
// keys key-<i>, or key-<i mod plan.keys> when the plan shares keys.
func (r *crashRun) produce(from, to int) error {
	recs := make([]*kgo.Record, 0, to-from)
	for i := from; i < to; i++ {
		recs = append(recs, &kgo.Record{Topic: r.b.name("orders"), Key: r.plan.kafkaKey(i), Value: r.plan.wl.value(i), Timestamp: time.Now()})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return r.b.client.ProduceSync(ctx, recs...).FirstErr()
}

// kafkaKey is record i's Kafka key.
func (p crashPlan) kafkaKey(i int) []byte {
	if p.keys > 0 {
		i %= p.keys
	}
	return fmt.Appendf(nil, "key-%d", i)
}
