package worker

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/sluice-dev/sluice/internal/workerconfig"
	"github.com/sluice-dev/sluice/worker/sink"
)

// Start and stop: opening the sink, the startup jitter, the processing context
// that outlives a SIGTERM by the shutdown timeout, and the bounded shutdown.

// sinkOpenBackoffMax caps the wait between attempts to open the sink.
const sinkOpenBackoffMax = 30 * time.Second

// openSinkRetrying opens the sink, retrying with backoff while it can't be
// reached (a database that is down at start): the worker stays alive and
// unready, saying why, instead of exiting into a crash loop whose restarts
// back off for minutes. It returns nil when ctx ends first.
func (w *Worker) openSinkRetrying(ctx context.Context) sink.Sink {
	for attempt := 1; ; attempt++ {
		snk, err := openSink(ctx, w.cfg, w.producer.Load)
		if err == nil {
			w.sinkOpenErr.Store(nil)
			return snk
		}
		w.sinkOpenErr.Store(&err)
		w.metrics.sinkOpenFailures.Inc()
		wait := min(time.Duration(attempt)*time.Second, sinkOpenBackoffMax)
		w.log.Warn("could not open the sink; retrying", "attempt", attempt, "in", wait, "err", err)
		if !sleepCtx(ctx, wait) {
			return nil
		}
	}
}

// reportDurability says, once at start, when the sink's database can forget
// commits it acknowledged: the guarantees rest on them staying.
func (w *Worker) reportDurability() {
	d, ok := w.snk.(interface{ DurabilityRisks() []string })
	if !ok {
		return
	}
	risks := d.DurabilityRisks()
	w.metrics.durabilityRisks.Set(float64(len(risks)))
	cost := "at-least-once: a record whose row the database forgets after the Kafka commit is lost"
	if w.offsetsInDB() {
		cost = "exactly-once: rows and offsets are lost together; the worker goes back to the offset the database kept and writes the records after it again (no gap, no duplicate; dead-letter copies may be duplicated)"
	}
	for _, r := range risks {
		w.log.Warn("the sink's database can lose commits it acknowledged", "setting", r, "cost", cost)
	}
}

// jitter waits a random time up to maxJitter, so that a restarted fleet joins
// the group (and hits the sink) spread out rather than all at once. A worker
// that a scale-up added joins at once: the backlog wants its capacity now,
// and the few pods a scale-up adds are no stampede (each still warms up).
func (w *Worker) jitter(ctx context.Context) error {
	maxJitter := w.cfg.Startup.MaxJitter.Duration
	if maxJitter <= 0 {
		return nil
	}
	if w.opts.ScaleUpPath != "" {
		hint, err := workerconfig.LoadScaleUp(w.opts.ScaleUpPath)
		switch {
		case err != nil:
			w.log.Warn("ignoring the scale-up hint", "err", err)
		case hint.AddedBy(w.now()):
			w.log.Info("started by a scale-up: joining without startup jitter", "scaledUpAt", hint.At.Time, "from", hint.From, "to", hint.To)
			return nil
		}
	}
	d := rand.N(maxJitter)
	w.log.Info("startup jitter", "delay", d)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// processingContext is the context of sink calls: processing outlives a
// SIGTERM (ctx's end) by at most the shutdown timeout, so in-flight records
// are finished, not abandoned mid-call.
func (w *Worker) processingContext(ctx context.Context) (context.Context, func()) {
	procCtx, procCancel := context.WithCancel(context.WithoutCancel(ctx))
	stopAfter := context.AfterFunc(ctx, func() {
		time.AfterFunc(w.cfg.Consumer.ShutdownTimeout.Duration, procCancel)
	})
	return procCtx, func() {
		stopAfter()
		procCancel()
	}
}

// finalizeBudget bounds what a shutdown does after the drain (itself bounded
// by shutdownTimeout): the last commit and leaving the group. So a SIGTERM
// ends the process within shutdownTimeout + finalizeBudget in every state,
// inside the pod's grace period. A leave that can't finish in time (a
// JoinGroup in flight waits for the whole rebalance) is abandoned: the broker
// expires the member's session, and the records it had not committed are
// read again by the next owner.
const finalizeBudget = 5 * time.Second

// shutdown commits what is finished and leaves the group (Close runs the revoke
// callback, which commits again for the partitions given up), within
// finalizeBudget.
func (w *Worker) shutdown(closeClient func() <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), finalizeBudget)
	defer cancel()
	w.commit(ctx, w.client, w.tracker.committable())
	w.client.AllowRebalance()
	w.log.Info("shutting down: committed finished records, leaving the group")
	select {
	case <-closeClient():
	case <-ctx.Done():
		w.log.Warn("shutting down: leaving the group did not finish in time; exiting without it (the broker expires the session)", "waited", finalizeBudget)
	}
	return nil
}

// closeOnce wraps a blocking close so that it runs once, in the background;
// the returned function starts it (the first time) and returns a channel
// closed when it has finished.
func closeOnce(fn func()) func() <-chan struct{} {
	done := make(chan struct{})
	var once sync.Once
	return func() <-chan struct{} {
		once.Do(func() {
			go func() {
				defer close(done)
				fn()
			}()
		})
		return done
	}
}

// closeWithin starts a close (closeOnce) and waits for it at most d.
func closeWithin(d time.Duration, closeFn func() <-chan struct{}) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-closeFn():
	case <-t.C:
	}
}
