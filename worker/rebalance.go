package worker

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Pauses and the rebalance callbacks: a paused partition resumes when due; a
// revoked one commits what is finished first, a lost one is forgotten.

// pause stops fetching p until until; resumeDue resumes it then.
func (w *Worker) pause(p tp, until time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.pausedUntil[p]; !ok {
		w.client.PauseFetchPartitions(map[string][]int32{p.topic: {p.partition}})
	}
	w.pausedUntil[p] = until
	w.metrics.paused.Set(float64(len(w.pausedUntil)))
}

// resumeDue resumes the partitions whose pause is over.
func (w *Worker) resumeDue() {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	resume := map[string][]int32{}
	for p, until := range w.pausedUntil {
		if !until.After(now) {
			resume[p.topic] = append(resume[p.topic], p.partition)
			delete(w.pausedUntil, p)
		}
	}
	if len(resume) > 0 {
		w.client.ResumeFetchPartitions(resume)
	}
	w.metrics.paused.Set(float64(len(w.pausedUntil)))
}

// onRevoked commits what is finished in the partitions being taken away, before
// they go: the next owner starts exactly after it.
func (w *Worker) onRevoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	w.metrics.rebalances.WithLabelValues("revoked").Inc()
	if offsets := w.tracker.committableFor(revoked); len(offsets) > 0 {
		w.commit(ctx, cl, offsets)
	}
	w.forget(cl, revoked)
}

// onLost forgets partitions lost without a chance to commit (session expired);
// their next owner re-reads from the last commit.
func (w *Worker) onLost(_ context.Context, cl *kgo.Client, lost map[string][]int32) {
	w.metrics.rebalances.WithLabelValues("lost").Inc()
	w.forget(cl, lost)
}

func (w *Worker) forget(cl *kgo.Client, parts map[string][]int32) {
	w.metrics.inFlight.Sub(float64(w.tracker.drop(parts)))
	w.mu.Lock()
	for topic, ps := range parts {
		for _, p := range ps {
			delete(w.pausedUntil, tp{topic, p})
			delete(w.fencedAt, tp{topic, p})
			delete(w.dbStart, tp{topic, p})
		}
	}
	w.metrics.paused.Set(float64(len(w.pausedUntil)))
	w.mu.Unlock()
	cl.ResumeFetchPartitions(parts) // a partition assigned again later starts unpaused
}
