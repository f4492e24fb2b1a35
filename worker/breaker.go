package worker

import (
	"context"
	"errors"
	"time"

	"github.com/sony/gobreaker/v2"
)

// The circuit breaker around sink calls: a call is admitted through the rate
// limit and the breaker, and reports back how it went; an open circuit is
// backpressure (the records stay in Kafka), never a dead letter.

// errSinkFailing is what the breaker is told when a sink call failed.
var errSinkFailing = errors.New("every record of the sink call failed transiently")

func (w *Worker) onBreakerStateChange(_ string, from, to gobreaker.State) {
	w.log.Warn("circuit breaker state changed", "from", from.String(), "to", to.String())
	switch to {
	case gobreaker.StateOpen:
		w.mu.Lock()
		w.openUntil = w.now().Add(w.cfg.CircuitBreaker.OpenDuration.Duration)
		w.mu.Unlock()
		w.metrics.circuit.Set(circuitOpen)
	case gobreaker.StateHalfOpen:
		w.metrics.circuit.Set(circuitHalfOpen)
	default:
		w.metrics.circuit.Set(circuitClosed)
	}
}

// sinkCall is one admitted call to the sink: report tells the breaker how it
// went; probe says whether it is the half-open circuit's trial call.
type sinkCall struct {
	report func(error)
	probe  bool
}

// admit passes n records through the rate limit and the circuit breaker. When
// the call may not go ahead it returns false and when to try again (zero:
// shutting down).
func (w *Worker) admit(ctx context.Context, n int) (sinkCall, time.Time, bool) {
	if err := w.limiter.wait(ctx, n, w.now()); err != nil {
		return sinkCall{}, time.Time{}, false
	}
	w.metrics.rateLimit.Set(float64(w.limiter.bucket.Limit()))
	report, err := w.breaker.Allow()
	if err != nil {
		// Open (or half-open with its trial call taken): backpressure. The
		// records stay in Kafka, not in the dead-letter topic.
		w.mu.Lock()
		until := w.openUntil
		w.mu.Unlock()
		if now := w.now(); !until.After(now) {
			until = now.Add(min(w.cfg.CircuitBreaker.OpenDuration.Duration, 500*time.Millisecond))
		}
		return sinkCall{}, until, false
	}
	return sinkCall{report: report, probe: w.breaker.State() == gobreaker.StateHalfOpen}, time.Time{}, true
}

// failedProbe reports a call in which transient of n records failed
// transiently. A failed trial call is backpressure like the open circuit it
// reopens: its records are read again later (after the returned time), not
// walked through the retry topics.
func (w *Worker) failedProbe(c sinkCall, transient, n int) (time.Time, bool) {
	if !c.probe || transient != n {
		return time.Time{}, false
	}
	c.report(errSinkFailing)
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.openUntil, true
}

// done reports a call to the breaker: it fails when every record in it failed
// transiently (the downstream is sick); poison pills are the records' fault.
func (c sinkCall) done(transient, n int) {
	if transient == n {
		c.report(errSinkFailing)
	} else {
		c.report(nil)
	}
}
