package kafka

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Offsets of one source partition in one sample.
type Offsets struct {
	Partition int32
	// Start is the log start offset, End the high watermark.
	Start, End int64
	// Committed is the group's committed offset, -1 when it has none.
	Committed int64
	// Oldest is the timestamp of the first record a read_committed consumer
	// gets at the group's position (Committed, or Start when nothing is
	// committed), zero when the partition has no lag, it could not be read, or
	// that consumer can't read on yet because a transaction is open there.
	Oldest time.Time
	// OnlyMarkers is true when a read_committed consumer at the group's
	// position has nothing to read below End: everything there is transaction
	// control records (commit/abort markers) or aborted records, so the
	// partition's true lag is zero even though End − Committed is not. It is
	// false while a transaction below End is still open: its records count as
	// lag until it commits or aborts.
	OnlyMarkers bool
}

// Observation is one poll's view of one watch.
type Observation struct {
	At time.Time
	// Err is set when the group's lag could not be measured (the cluster is
	// unreachable, the source topic is missing, OffsetFetch answered with an
	// error for one of its partitions); nothing else is then set.
	Err error
	// Partitions of the source topic, sorted by partition.
	Partitions []Offsets
	// Members of the consumer group, and its state as the coordinator reports it.
	Members    int
	GroupState string
	// StaticMembers are the group.instance.ids of the consumer group's static
	// members, sorted (KIP-345; none for share groups).
	StaticMembers []string
	// DeadLetterRecords is the number of records in the dead-letter topic (end −
	// start over its partitions); DeadLetterErr says why it is unknown.
	DeadLetterRecords int64
	DeadLetterErr     error
}

// ErrTopicNotFound is wrapped by observations and provisioning errors about a
// topic that does not exist.
var ErrTopicNotFound = errors.New("topic not found")

// sample measures every watch with a fixed number of batched requests: one
// ListOffsets for the start and one for the end offsets of all watched topics,
// one OffsetFetch and one DescribeGroups for all groups (each sharded by kadm per
// broker or coordinator), and one Fetch per leader for the oldest unconsumed
// record of the lagging partitions. The cost grows with brokers and groups, not
// with pipelines × partitions.
func (c *Cluster) sample(ctx context.Context, watches map[string]Watch, interval time.Duration) map[string]Observation {
	ctx, cancel := context.WithTimeout(ctx, max(interval, 5*time.Second))
	defer cancel()
	now := time.Now()
	out := make(map[string]Observation, len(watches))

	topicSet, groupSet, shareSet, nextGenSet := map[string]struct{}{}, map[string]struct{}{}, map[string]struct{}{}, map[string]struct{}{}
	for _, w := range watches {
		topicSet[w.Topic] = struct{}{}
		topicSet[w.DeadLetterTopic] = struct{}{}
		switch {
		case w.Share:
			shareSet[w.Group] = struct{}{}
		case w.NextGen:
			nextGenSet[w.Group] = struct{}{}
			groupSet[w.Group] = struct{}{} // its commits
		default:
			groupSet[w.Group] = struct{}{}
		}
	}
	topics := slices.Sorted(maps.Keys(topicSet))
	groups := slices.Sorted(maps.Keys(groupSet))
	shareGroups := slices.Sorted(maps.Keys(shareSet))
	nextGenGroups := slices.Sorted(maps.Keys(nextGenSet))

	ends, err := c.admin.ListEndOffsets(ctx, topics...)
	var starts kadm.ListedOffsets
	if err == nil {
		starts, err = c.admin.ListStartOffsets(ctx, topics...)
	}
	if err != nil {
		for u := range watches {
			out[u] = Observation{At: now, Err: fmt.Errorf("list offsets: %w", err)}
		}
		return out
	}
	var committed kadm.FetchOffsetsResponses
	var described kadm.DescribedGroups
	var describeErr error
	if len(groups) > 0 {
		committed = c.admin.FetchManyOffsets(ctx, groups...)
		described, describeErr = c.admin.DescribeGroups(ctx, groups...)
	}
	var shared shareSample
	if len(shareGroups) > 0 {
		shared = c.sampleShareGroups(ctx, shareGroups)
	}
	var nextGen kadm.DescribedConsumerGroups
	var nextGenErr error
	if len(nextGenGroups) > 0 {
		nextGen, nextGenErr = c.admin.DescribeConsumerGroups(ctx, nextGenGroups...)
	}

	for u, w := range watches {
		o := Observation{At: now}
		var parts []Offsets
		var err error
		if w.Share {
			parts, err = shareSourceOffsets(w, ends, starts, shared)
		} else {
			parts, err = sourceOffsets(w, ends, starts, committed)
		}
		if err != nil {
			o.Err = err
			out[u] = o
			continue
		}
		o.Partitions = parts
		switch {
		case w.Share:
			if g, ok := shared.members[w.Group]; ok && g.Err == nil {
				o.Members, o.GroupState = len(g.Members), g.GroupState
			}
		case w.NextGen:
			if g, ok := nextGen[w.Group]; ok && g.Err == nil && nextGenErr == nil {
				o.Members, o.GroupState = len(g.Members), g.State
			}
		case describeErr == nil:
			if g, ok := described[w.Group]; ok && g.Err == nil {
				o.Members, o.GroupState = len(g.Members), g.State
				o.StaticMembers = staticMembers(g)
			}
		}
		o.DeadLetterRecords, o.DeadLetterErr = depth(w.DeadLetterTopic, ends, starts)
		out[u] = o
	}
	c.readOldest(ctx, watches, out)
	return out
}

// sourceOffsets joins end, start and committed offsets of w's source topic.
func sourceOffsets(w Watch, ends, starts kadm.ListedOffsets, committed kadm.FetchOffsetsResponses) ([]Offsets, error) {
	endParts, err := sourceEnds(w.Topic, ends)
	if err != nil {
		return nil, err
	}
	fetched, ok := committed[w.Group]
	switch {
	case !ok:
		return nil, fmt.Errorf("group %q: no offsets fetched", w.Group)
	case errors.Is(fetched.Err, kerr.GroupIDNotFound):
		// A group that never committed: measured from startFrom.
	case fetched.Err != nil:
		return nil, fmt.Errorf("group %q: fetch committed offsets: %w", w.Group, fetched.Err)
	}
	parts := make([]Offsets, 0, len(endParts))
	// In partition order, so that the error a sample reports (and the status
	// message built from it) does not change from poll to poll.
	for _, p := range slices.Sorted(maps.Keys(endParts)) {
		o, err := partitionBounds(w.Topic, p, endParts[p], starts)
		if err != nil {
			return nil, err
		}
		if c, ok := fetched.Fetched.Lookup(w.Topic, p); ok {
			// An error for one partition says nothing about whether the group
			// committed there; reading it as "no commit" would measure the lag
			// from startFrom (the log start: a spurious scale-up).
			if c.Err != nil {
				return nil, fmt.Errorf("group %q: committed offset of topic %q partition %d unknown: %w", w.Group, w.Topic, p, c.Err)
			}
			if c.At >= 0 {
				o.Committed = c.At
			}
		}
		parts = append(parts, o)
	}
	return parts, nil
}

// partitionBounds is one source partition's start and end offsets, with
// nothing committed yet.
func partitionBounds(topic string, p int32, end kadm.ListedOffset, starts kadm.ListedOffsets) (Offsets, error) {
	if end.Err != nil {
		if isUnknownTopic(end.Err) {
			return Offsets{}, fmt.Errorf("source topic %q: %w", topic, ErrTopicNotFound)
		}
		return Offsets{}, fmt.Errorf("source topic %q partition %d: end offset: %w", topic, p, end.Err)
	}
	start, ok := starts.Lookup(topic, p)
	if !ok || start.Err != nil {
		return Offsets{}, fmt.Errorf("source topic %q partition %d: start offset unknown", topic, p)
	}
	return Offsets{Partition: p, Start: start.Offset, End: end.Offset, Committed: -1}, nil
}

// sourceEnds are the end offsets of the source topic's partitions.
func sourceEnds(topic string, ends kadm.ListedOffsets) (map[int32]kadm.ListedOffset, error) {
	endParts, ok := ends[topic]
	if !ok || len(endParts) == 0 {
		return nil, fmt.Errorf("source topic %q: %w", topic, ErrTopicNotFound)
	}
	if e, ok := endParts[-1]; ok && e.Err != nil {
		if isUnknownTopic(e.Err) {
			return nil, fmt.Errorf("source topic %q: %w", topic, ErrTopicNotFound)
		}
		return nil, fmt.Errorf("source topic %q: %w", topic, e.Err)
	}
	return endParts, nil
}

// depth is how many records topic holds (end − start over its partitions).
func depth(topic string, ends, starts kadm.ListedOffsets) (int64, error) {
	endParts, ok := ends[topic]
	if !ok || len(endParts) == 0 {
		return 0, fmt.Errorf("dead-letter topic %q: %w", topic, ErrTopicNotFound)
	}
	var n int64
	for p, end := range endParts {
		start, ok := starts.Lookup(topic, p)
		if end.Err != nil || !ok || start.Err != nil {
			if isUnknownTopic(end.Err) {
				return 0, fmt.Errorf("dead-letter topic %q: %w", topic, ErrTopicNotFound)
			}
			return 0, fmt.Errorf("dead-letter topic %q partition %d: offsets unknown", topic, p)
		}
		n += max(end.Offset-start.Offset, 0)
	}
	return n, nil
}
