package replay

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// coordinatorWait bounds how long a group's offsets are asked for again while
// its coordinator is not there yet: a cluster that just started (its
// __consumer_offsets partitions still being created), or a coordinator moving
// to another broker, answers COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR or
// COORDINATOR_LOAD_IN_PROGRESS for a few seconds, and kgo hands an admin
// request the FindCoordinator error without asking again.
const coordinatorWait = 30 * time.Second

// coordinatorUnsettled says err is one of those answers.
func coordinatorUnsettled(err error) bool {
	return errors.Is(err, kerr.CoordinatorNotAvailable) ||
		errors.Is(err, kerr.CoordinatorLoadInProgress) ||
		errors.Is(err, kerr.NotCoordinator)
}

// UntilCoordinatorSettles calls call until it returns something other than a
// coordinator that is not there yet, for at most coordinatorWait, backing off
// from 100 ms to 2 s between calls. The last answer is returned as it is.
func UntilCoordinatorSettles[T any](ctx context.Context, call func() (T, error)) (T, error) {
	deadline := time.Now().Add(coordinatorWait)
	backoff := 100 * time.Millisecond
	for {
		v, err := call()
		if !coordinatorUnsettled(err) || time.Now().Add(backoff).After(deadline) {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}
