package replay

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Move is where a rewind puts one partition of a consumer group: To, from
// the group's position before the rewind (From; nil when it had none).
type Move struct {
	Partition int32
	From      *int64
	To        int64
	// Again is how many records the pipeline reads again because of the move.
	Again int64
}

// RewindMoves decides, for each partition of a rewind's snapshot (Start is
// the point to go back to, End the partition's end), whether the group moves
// there. A rewind only goes back: a partition whose position is at or before
// Start already keeps it, because moving it forward would skip the records in
// between. A partition without a position moves to Start (the pipeline would
// otherwise start at its startFrom). committed holds the group's positions
// before the rewind, by partition.
func RewindMoves(parts []Partition, committed map[int32]int64) (moves []Move, kept []int32) {
	for _, p := range parts {
		c, has := committed[p.Partition]
		switch {
		case !has:
			moves = append(moves, Move{Partition: p.Partition, To: p.Start, Again: max(p.End-p.Start, 0)})
		case p.Start < c:
			from := c
			moves = append(moves, Move{Partition: p.Partition, From: &from, To: p.Start, Again: c - p.Start})
		default:
			kept = append(kept, p.Partition)
		}
	}
	return moves, kept
}

// GroupStopped reports whether group has no members, so no consumer commits
// over the offsets a rewind sets: neither classic members nor KIP-848 ones.
// When it has members, the answer says who. A group that does not exist has
// none.
func GroupStopped(ctx context.Context, adm *kadm.Client, group string) (bool, string, error) {
	described, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return false, "", fmt.Errorf("describe group %s: %w", group, err)
	}
	// Kafka answers GROUP_ID_NOT_FOUND for a KIP-848 group too: not a
	// classic one; its members are asked for below.
	d, ok := described[group]
	if ok && d.Err != nil && !errors.Is(d.Err, kerr.GroupIDNotFound) {
		return false, "", fmt.Errorf("describe group %s: %w", group, d.Err)
	}
	if ok && d.Err == nil && len(d.Members) > 0 {
		ids := make([]string, 0, len(d.Members))
		for _, m := range d.Members {
			ids = append(ids, memberName(m.MemberID, m.InstanceID))
		}
		return false, membersOf(group, d.State, ids), nil
	}
	// A KIP-848 group's members are described only by ConsumerGroupDescribe.
	next, err := adm.DescribeConsumerGroups(ctx, group)
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) && !errors.Is(err, kerr.UnsupportedVersion) {
		return false, "", fmt.Errorf("describe consumer group %s: %w", group, err)
	}
	if g, ok := next[group]; ok && g.Err == nil && len(g.Members) > 0 {
		ids := make([]string, 0, len(g.Members))
		for _, m := range g.Members {
			ids = append(ids, memberName(m.MemberID, m.InstanceID))
		}
		return false, membersOf(group, g.State, ids), nil
	}
	return true, "", nil
}

func memberName(id string, instance *string) string {
	if instance != nil {
		return *instance
	}
	return id
}

func membersOf(group, state string, ids []string) string {
	slices.Sort(ids)
	return fmt.Sprintf("group %s is %s with %d members (%s)", group, state, len(ids), strings.Join(ids, ", "))
}

// CommittedOffsets is group's position on each partition of topic that has
// one. It waits for pending transactional offset commits to be decided (a
// worker of ExactlyOnce delivery with the kafka sink killed mid-transaction):
// an aborted one must not be taken for the position.
func CommittedOffsets(ctx context.Context, adm *kadm.Client, group, topic string) (map[int32]int64, error) {
	fetched, err := UntilCoordinatorSettles(ctx, func() (kadm.OffsetResponses, error) {
		return adm.FetchOffsetsForTopics(kadm.RequireStable(ctx), group, topic)
	})
	if errors.Is(err, kerr.GroupIDNotFound) {
		return map[int32]int64{}, nil // kfake's answer for a group that never committed
	}
	if err != nil {
		return nil, fmt.Errorf("fetch offsets of group %s: %w", group, err)
	}
	out := map[int32]int64{}
	for p, r := range fetched[topic] {
		if r.Err != nil {
			return nil, fmt.Errorf("fetch offset of group %s on %s/%d: %w", group, topic, p, r.Err)
		}
		if r.At >= 0 {
			out[p] = r.At
		}
	}
	return out, nil
}

// CommitMoves sets group's offsets on topic to the moves' targets. The group
// must have no members (GroupStopped): the broker refuses, and a member would
// overwrite, an outside commit to a group that has.
func CommitMoves(ctx context.Context, adm *kadm.Client, group, topic string, moves []Move) error {
	if len(moves) == 0 {
		return nil
	}
	offsets := kadm.Offsets{}
	for _, m := range moves {
		offsets.AddOffset(topic, m.Partition, m.To, -1)
	}
	_, err := UntilCoordinatorSettles(ctx, func() (struct{}, error) { return struct{}{}, adm.CommitAllOffsets(ctx, group, offsets) })
	if err != nil {
		return fmt.Errorf("commit the rewound offsets of group %s on %s: %w", group, topic, err)
	}
	return nil
}
