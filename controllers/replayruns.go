package controllers

import (
	"context"
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// replayRuns are the redrives this operator runs, one goroutine per
// StreamReplay. It is a manager Runnable that needs leader election: only the
// leader copies, and its runs stop when it loses the lease or shuts down
// (their position is committed with their copies, so the next leader resumes
// them).
type replayRuns struct {
	mu      sync.Mutex
	base    context.Context // set by Start
	running map[types.NamespacedName]context.CancelFunc
	wg      sync.WaitGroup
}

func newReplayRuns() *replayRuns {
	return &replayRuns{running: map[types.NamespacedName]context.CancelFunc{}}
}

// Start holds the runs' context until the manager stops, then waits for them.
func (rr *replayRuns) Start(ctx context.Context) error {
	rr.mu.Lock()
	rr.base = ctx
	rr.mu.Unlock()
	<-ctx.Done()
	rr.wg.Wait()
	return nil
}

// NeedLeaderElection: only the leader copies.
func (rr *replayRuns) NeedLeaderElection() bool { return true }

// ensure starts run for key unless it runs already; it reports false when
// the runs have not started (the reconcile is retried).
func (rr *replayRuns) ensure(key types.NamespacedName, run func(ctx context.Context)) bool {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if rr.base == nil || rr.base.Err() != nil {
		return false
	}
	if _, ok := rr.running[key]; ok {
		return true
	}
	ctx, cancel := context.WithCancel(rr.base)
	rr.running[key] = cancel
	rr.wg.Add(1)
	go func() {
		defer rr.wg.Done()
		defer func() {
			rr.mu.Lock()
			delete(rr.running, key)
			rr.mu.Unlock()
			cancel()
		}()
		run(ctx)
	}()
	return true
}

// stop cancels key's run, if any.
func (rr *replayRuns) stop(key types.NamespacedName) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if cancel, ok := rr.running[key]; ok {
		cancel()
	}
}
