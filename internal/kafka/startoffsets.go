package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// StartOutcome says what CommitStartingOffsets found and did.
type StartOutcome int

// Outcomes of CommitStartingOffsets.
const (
	// StartCommitted: the group had no committed offset for the topic and no
	// members; the end of every partition is now committed for it.
	StartCommitted StartOutcome = iota + 1
	// StartAlreadyCommitted: the group already has offsets for the topic
	// (an existing group, or an earlier run of this function).
	StartAlreadyCommitted
	// StartGroupActive: the group has no offsets for the topic but has members;
	// they decide where they start, and nothing was committed.
	StartGroupActive
)

// CommitStartingOffsets fixes where a new consumer group starts reading topic
// "from now on" (startFrom Latest): it commits the current end of every
// partition for the group, unless the group already has offsets for the topic
// or has members.
//
// Without it, a group that has never committed has no position at all: its lag
// reads as 0 however many records arrive (Latest means "whatever the end is
// when a member joins"), a pipeline scaled to zero never wakes, and a worker
// that starts later skips everything that arrived in between. With the start
// committed, every record that arrives after this call is lag and is consumed.
func CommitStartingOffsets(ctx context.Context, adm *kadm.Client, group, topic string) (StartOutcome, error) {
	fetched, err := adm.FetchOffsets(ctx, group)
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return 0, fmt.Errorf("group %q: fetch committed offsets: %w", group, err)
	}
	for _, p := range fetched[topic] {
		if p.Err == nil && p.At >= 0 {
			return StartAlreadyCommitted, nil
		}
	}
	described, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return 0, fmt.Errorf("group %q: describe: %w", group, err)
	}
	if g, ok := described[group]; ok && g.Err == nil && len(g.Members) > 0 {
		return StartGroupActive, nil
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("topic %q: list end offsets: %w", topic, err)
	}
	if err := ends.Error(); err != nil {
		return 0, fmt.Errorf("topic %q: list end offsets: %w", topic, err)
	}
	resp, err := adm.CommitOffsets(ctx, group, ends.Offsets())
	if err != nil {
		return 0, fmt.Errorf("group %q: commit starting offsets: %w", group, err)
	}
	if err := resp.Error(); err != nil {
		if errors.Is(err, kerr.UnknownMemberID) || errors.Is(err, kerr.IllegalGeneration) || errors.Is(err, kerr.RebalanceInProgress) {
			return StartGroupActive, nil // a member joined since DescribeGroups
		}
		return 0, fmt.Errorf("group %q: commit starting offsets: %w", group, err)
	}
	return StartCommitted, nil
}
