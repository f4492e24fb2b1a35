package worker

import (
	"context"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// unlimitedRampFactor: with no steady-state limit, the warm-up ramps from the
// warm-up rate to this multiple of it, then lifts the limit.
const unlimitedRampFactor = 100

// warmupLimit is the rate limit at elapsed time since the worker started
// consuming: a linear ramp from `from` to `to` records/s over `duration`, then
// `to` (0 = unlimited). A restarted fleet thus eases back onto its downstream.
func warmupLimit(elapsed, duration time.Duration, from, to float64) rate.Limit {
	if elapsed >= duration || from <= 0 {
		if to <= 0 {
			return rate.Inf
		}
		return rate.Limit(to)
	}
	if to <= 0 {
		to = from * unlimitedRampFactor
	}
	frac := float64(elapsed) / float64(duration)
	return rate.Limit(from + (to-from)*frac)
}

// limiter is a token bucket whose rate follows the warm-up ramp.
type limiter struct {
	mu       sync.Mutex // guards the ramp state; the bucket has its own lock
	bucket   *rate.Limiter
	start    time.Time
	duration time.Duration
	from, to float64
	steady   bool
}

func newLimiter(start time.Time, warmup time.Duration, warmupRPS, rps int32) *limiter {
	l := &limiter{start: start, duration: warmup, from: float64(warmupRPS), to: float64(rps)}
	lim := warmupLimit(0, warmup, l.from, l.to)
	l.bucket = rate.NewLimiter(lim, burst(lim))
	return l
}

// burst allows a tenth of a second's worth of records at once (at least one).
func burst(l rate.Limit) int {
	if l == rate.Inf {
		return 0
	}
	return max(1, int(math.Ceil(float64(l)/10)))
}

// wait blocks until n records may go, updating the rate along the ramp. Once the
// ramp is over and no limit is set, it costs nothing.
func (l *limiter) wait(ctx context.Context, n int, now time.Time) error {
	l.mu.Lock()
	if l.steady && l.bucket.Limit() == rate.Inf {
		l.mu.Unlock()
		return nil
	}
	if !l.steady {
		lim := warmupLimit(now.Sub(l.start), l.duration, l.from, l.to)
		if lim != l.bucket.Limit() {
			l.bucket.SetLimitAt(now, lim)
			l.bucket.SetBurstAt(now, burst(lim))
		}
		l.steady = now.Sub(l.start) >= l.duration
	}
	l.mu.Unlock()
	if l.bucket.Limit() == rate.Inf {
		return nil
	}
	// Take tokens in burst-sized steps: WaitN refuses n above the burst.
	for n > 0 {
		step := min(n, l.bucket.Burst())
		if err := l.bucket.WaitN(ctx, step); err != nil {
			return err
		}
		n -= step
	}
	return nil
}
