package controllers

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/replay"
)

// ReasonTruncateFailed: a redrive with spec.truncate completed, but deleting
// its dead letters failed.
const (
	ReasonTruncateFailed = "TruncateFailed"
	truncateAttempts     = 5
)

// replayEnd is how a redrive ended: with spec.truncate, what it deleted.
type replayEnd struct {
	truncated   *int64
	points      []replay.TruncationPoint
	truncateErr error
}

// truncateRedriven deletes, once every copy is committed, the dead letters
// the redrive copied or parked (replay.TruncationPoints: never one it did
// not take), retrying a failure a few times. It runs before Complete is
// recorded: a crash in between reruns the redrive, which copies nothing more
// (its position is at the end) and truncates to the same points again.
func (r *StreamReplayReconciler) truncateRedriven(ctx context.Context, sr *sluicev1.StreamReplay, plan replayPlan, conn []kgo.Opt) *replayEnd {
	end := &replayEnd{}
	for attempt := 1; ; attempt++ {
		points, n, err := truncate(ctx, conn, snapshotParts(sr.Status.Snapshot), plan.sel)
		if err == nil {
			end.points, end.truncated = points, &n
			return end
		}
		if attempt == truncateAttempts || ctx.Err() != nil {
			end.truncateErr = err
			return end
		}
		logf.FromContext(ctx).Info("could not delete the redriven dead letters; retrying", "streamreplay", sr.Name, "err", err.Error())
		select {
		case <-ctx.Done():
		case <-time.After(replayRetryInterval):
		}
	}
}

func truncate(ctx context.Context, conn []kgo.Opt, parts []replay.Partition, sel replay.Selection) ([]replay.TruncationPoint, int64, error) {
	kctx, adm, done, err := replayAdmin(ctx, conn)
	if err != nil {
		return nil, 0, err
	}
	defer done()
	points, err := replay.TruncationPoints(kctx, conn, adm, parts, sel)
	if err != nil {
		return nil, 0, err
	}
	n, err := replay.Truncate(kctx, adm, points)
	return points, n, err
}

// record writes the end into sr's status and says it in words for the
// message ("" when there is nothing to say).
func (e *replayEnd) record(sr *sluicev1.StreamReplay) string {
	switch {
	case e.truncateErr != nil:
		return fmt.Sprintf("; could not delete the redriven dead letters (spec.truncate): %v", e.truncateErr)
	case e.truncated == nil:
		return ""
	}
	sr.Status.Truncated = e.truncated
	for i := range sr.Status.Snapshot {
		p := &sr.Status.Snapshot[i]
		for _, t := range e.points {
			if t.Topic == p.Topic && t.Partition == p.Partition {
				to := t.To
				p.TruncatedTo = &to
			}
		}
	}
	return fmt.Sprintf("; deleted %d offsets of the dead-letter topic up to the first record not taken (spec.truncate)", *e.truncated)
}
