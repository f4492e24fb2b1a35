package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Commits of the finished prefix: asynchronous from the poll loop, synchronous
// on revocation and shutdown.

// commitRetryInterval is how soon an idle worker tries again to commit offsets
// that it couldn't commit (or that it must catch up) when no record comes.
const commitRetryInterval = time.Second

// commitAsync starts committing offsets and returns: the next poll's records
// are handled while the commit travels (a synchronous commit per poll was a
// quarter of the loop's time, see BENCHMARKS.md). One commit is on its way at
// a time; while it is, the finished offsets wait for the next round, which
// commits the newer ones. When the commit returns and offsets finished in the
// meantime are still uncommitted, it wakes the poll loop, whose next round
// commits them at once: after a burst, the last records used to wait for the
// commit retry interval (1 s, in 16 of 20 runs), keeping the lag up and a
// crash in that second re-reading them. Commits are issued by the poll loop
// only, while rebalances are blocked; revocation and shutdown commit
// synchronously, after any commit still on its way (kgo keeps commits in order).
func (w *Worker) commitAsync(ctx context.Context, offsets map[string]map[int32]kgo.EpochOffset) {
	if len(offsets) == 0 || !w.committing.CompareAndSwap(false, true) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, deliveryTimeout(w.cfg.Consumer.MaxPollInterval.Duration))
	w.client.CommitOffsets(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		cancel()
		ok := w.committedOrNot(offsets, resp, err)
		w.committing.Store(false)
		if ok && w.tracker.uncommitted() {
			if wake := w.wakePoll.Load(); wake != nil {
				(*wake)()
			}
		}
	})
}

// commit commits offsets and waits, giving up after the delivery timeout: a
// commit the coordinator can't take now (it moved, it is loading) is retried
// with the next round's offsets instead of holding the poll loop, and with it
// the group.
func (w *Worker) commit(ctx context.Context, cl *kgo.Client, offsets map[string]map[int32]kgo.EpochOffset) {
	if len(offsets) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, deliveryTimeout(w.cfg.Consumer.MaxPollInterval.Duration))
	defer cancel()
	cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		w.committedOrNot(offsets, resp, err)
	})
}

// committedOrNot takes a commit's outcome: the tracker learns what was
// committed; a failure is counted and logged, and the next round commits
// again. It reports whether the commit succeeded.
func (w *Worker) committedOrNot(offsets map[string]map[int32]kgo.EpochOffset, resp *kmsg.OffsetCommitResponse, err error) bool {
	if err == nil {
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if e := kerr.ErrorForCode(p.ErrorCode); e != nil {
					err = fmt.Errorf("%s[%d]: %w", t.Topic, p.Partition, e)
				}
			}
		}
	}
	if err != nil {
		w.metrics.commits.WithLabelValues(commitResultFailed).Inc()
		w.log.Warn("commit failed; the records will be committed with the next round or re-read", "err", err)
		return false
	}
	w.metrics.commits.WithLabelValues(commitResultSucceeded).Inc()
	w.tracker.committed(offsets)
	return true
}
