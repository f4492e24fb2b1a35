package replay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// ReprocessPlan is what a StreamReplay of mode Reprocess asks of its Job: run
// the records of a snapshot that the selection takes through the pipeline's
// sink, with the pipeline's idempotency key, and stop at the snapshot's end.
// The operator writes it into the Job's environment (ReprocessPlanEnv); the
// worker config is the pipeline's own.
type ReprocessPlan struct {
	// Replay is "<namespace>/<name>" of the StreamReplay.
	Replay string `json:"replay"`
	// Group is the replay's own consumer group. Its committed offsets are the
	// position, and their metadata the counts so far (ReprocessCounts), of
	// each partition: a restarted Job resumes there.
	Group string `json:"group"`
	// Partitions is the snapshot: each read from Start to End (excluded).
	Partitions []Partition `json:"partitions"`
	// Select decides per record.
	Select Selection `json:"select"`
	// RateLimit caps the records per second written to the sink; 0: no cap.
	RateLimit int `json:"rateLimit,omitempty"`
	// DeadLetter: a record that fails again is copied to the pipeline's
	// dead-letter topic before the position moves past it (when the replay
	// reads the source or retry topics). Reading the dead-letter topic, it
	// stays where it is.
	DeadLetter bool `json:"deadLetter,omitempty"`
}

// ReprocessPlanEnv is the environment variable that holds a Reprocess Job's
// plan (JSON); the worker binary runs the plan instead of consuming.
// TerminationLogEnv, when set, is where the binary writes its result
// (ReprocessCounts, JSON) instead of /dev/termination-log.
const (
	ReprocessPlanEnv  = "SLUICE_REPROCESS_PLAN"
	TerminationLogEnv = "SLUICE_TERMINATION_LOG"
)

// ReprocessCounts are what a Reprocess did: records the sink took (Done) and
// records that failed again. Per partition, they are the metadata of its
// committed position; summed, the Job's result.
type ReprocessCounts struct {
	Done   int64 `json:"done"`
	Failed int64 `json:"failed"`
}

// Add sums counts.
func (c ReprocessCounts) Add(o ReprocessCounts) ReprocessCounts {
	return ReprocessCounts{Done: c.Done + o.Done, Failed: c.Failed + o.Failed}
}

// ReprocessPositions reads a Reprocess replay's group: each partition's
// committed position and its counts. A group that never committed has none.
func ReprocessPositions(ctx context.Context, adm *kadm.Client, group string) (kadm.OffsetResponses, map[string]map[int32]ReprocessCounts, error) {
	committed, err := UntilCoordinatorSettles(ctx, func() (kadm.OffsetResponses, error) { return adm.FetchOffsets(ctx, group) })
	if errors.Is(err, kerr.GroupIDNotFound) {
		return nil, nil, nil // kfake's answer for a group that never committed
	}
	if err == nil {
		err = committed.Error()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("fetch the position of group %s: %w", group, err)
	}
	counts := map[string]map[int32]ReprocessCounts{}
	var decodeErr error
	committed.Each(func(o kadm.OffsetResponse) {
		var c ReprocessCounts
		if err := json.Unmarshal([]byte(o.Metadata), &c); err != nil && decodeErr == nil {
			decodeErr = fmt.Errorf("group %s: the counts committed for %s/%d don't decode (%q): %w", group, o.Topic, o.Partition, o.Metadata, err)
		}
		if counts[o.Topic] == nil {
			counts[o.Topic] = map[int32]ReprocessCounts{}
		}
		counts[o.Topic][o.Partition] = c
	})
	return committed, counts, decodeErr
}

// ReprocessProgress sums the counts a Reprocess replay's group committed.
func ReprocessProgress(ctx context.Context, adm *kadm.Client, group string) (ReprocessCounts, error) {
	_, counts, err := ReprocessPositions(ctx, adm, group)
	var total ReprocessCounts
	for _, ps := range counts {
		for _, c := range ps {
			total = total.Add(c)
		}
	}
	return total, err
}
