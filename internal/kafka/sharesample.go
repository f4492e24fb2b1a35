package kafka

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// shareSample is one poll's view of the watched share groups.
type shareSample struct {
	offsets    kadm.DescribedShareGroupsOffsets
	offsetsErr error
	members    kadm.DescribedShareGroups
}

// sampleShareGroups describes the share groups' offsets (one request per
// coordinator) and members.
func (c *Cluster) sampleShareGroups(ctx context.Context, groups []string) shareSample {
	var s shareSample
	s.offsets, s.offsetsErr = c.admin.DescribeShareGroupOffsets(ctx, groups...)
	s.members, _ = c.admin.DescribeShareGroups(ctx, groups...) // members are a detail; the lag is what counts
	return s
}

// shareSourceOffsets joins end and start offsets of w's source topic with its
// share group's lag. A share group commits no offsets: records are
// acknowledged one by one, and the broker counts those not yet acknowledged
// (the share partition's lag). Committed is End − lag, so that everything
// that reads a consumer group's lag as End − Committed reads a share group's
// the same; -1 (measured from startFrom) for a partition the group has not
// read yet.
func shareSourceOffsets(w Watch, ends, starts kadm.ListedOffsets, s shareSample) ([]Offsets, error) {
	endParts, err := sourceEnds(w.Topic, ends)
	if err != nil {
		return nil, err
	}
	if s.offsetsErr != nil && s.offsets == nil {
		return nil, fmt.Errorf("share group %q: describe offsets: %w", w.Group, s.offsetsErr)
	}
	g, ok := s.offsets[w.Group]
	switch {
	case !ok:
		return nil, fmt.Errorf("share group %q: no offsets described", w.Group)
	case errors.Is(g.Err, kerr.GroupIDNotFound):
		// A group that never fetched: measured from startFrom.
	case g.Err != nil:
		return nil, fmt.Errorf("share group %q: describe offsets: %w", w.Group, g.Err)
	}
	parts := make([]Offsets, 0, len(endParts))
	for _, p := range slices.Sorted(maps.Keys(endParts)) {
		o, err := partitionBounds(w.Topic, p, endParts[p], starts)
		if err != nil {
			return nil, err
		}
		if so, ok := g.Offsets[w.Topic][p]; ok {
			if so.Err != nil {
				return nil, fmt.Errorf("share group %q: lag of topic %q partition %d unknown: %w", w.Group, w.Topic, p, so.Err)
			}
			if so.StartOffset >= 0 && so.Lag >= 0 {
				o.Committed = max(o.End-so.Lag, o.Start)
			}
		}
		parts = append(parts, o)
	}
	return parts, nil
}
