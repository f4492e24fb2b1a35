package replay

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TruncationPoint is how far a redrive may delete a partition of the topic
// it read: up to To (excluded), every record from the partition's start was
// selected (copied or parked).
type TruncationPoint struct {
	Topic     string
	Partition int32
	// From is the partition's start before the deletion, To the new start.
	From, To int64
}

// TruncationPoints finds, for each partition of a completed redrive's
// snapshot, how far it may be deleted: up to the first data record at or
// after the partition's current start that the selection skips, or the
// snapshot's end. Records before the snapshot's start were not selected, so a
// partition whose snapshot starts after its log start is not cut at all.
// Transaction markers don't stop it. The decision per record is the
// redrive's own (Selection.Decide), so what is deleted is exactly what was
// copied or parked.
func TruncationPoints(ctx context.Context, conn []kgo.Opt, adm *kadm.Client, parts []Partition, sel Selection) ([]TruncationPoint, error) {
	if len(parts) == 0 {
		return nil, nil
	}
	topics := map[string]bool{}
	for _, p := range parts {
		topics[p.Topic] = true
	}
	names := make([]string, 0, len(topics))
	for t := range topics {
		names = append(names, t)
	}
	starts, err := adm.ListStartOffsets(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("list start offsets of %v: %w", names, err)
	}
	points := make([]TruncationPoint, len(parts))
	var scanned []Partition
	var index []int
	for i, p := range parts {
		s, ok := starts.Lookup(p.Topic, p.Partition)
		if !ok {
			return nil, fmt.Errorf("start offset of %s/%d: not listed", p.Topic, p.Partition)
		}
		if s.Err != nil {
			return nil, fmt.Errorf("start offset of %s/%d: %w", p.Topic, p.Partition, s.Err)
		}
		points[i] = TruncationPoint{Topic: p.Topic, Partition: p.Partition, From: s.Offset, To: s.Offset}
		if p.Start > s.Offset || s.Offset >= p.End {
			continue // records before the snapshot were not selected; or nothing left
		}
		points[i].To = p.End
		scanned = append(scanned, Partition{Topic: p.Topic, Partition: p.Partition, Start: s.Offset, End: p.End})
		index = append(index, i)
	}
	err = scan(ctx, conn, scanned, func(j int, r *kgo.Record) bool {
		if r.Attrs.IsControl() || sel.Decide(r) != Skip {
			return true
		}
		points[index[j]].To = r.Offset
		return false
	})
	return points, err
}

// Truncate deletes each partition up to its point (kadm DeleteRecords) and
// returns how many offsets went. Deleting up to where a partition already
// starts is no change, so a truncation interrupted by a crash can run again.
func Truncate(ctx context.Context, adm *kadm.Client, points []TruncationPoint) (int64, error) {
	offsets := kadm.Offsets{}
	var n int64
	for _, c := range points {
		if c.To > c.From {
			offsets.AddOffset(c.Topic, c.Partition, c.To, -1)
			n += c.To - c.From
		}
	}
	if len(offsets) == 0 {
		return 0, nil
	}
	resp, err := adm.DeleteRecords(ctx, offsets)
	if err != nil {
		return 0, fmt.Errorf("delete records: %w", err)
	}
	if err := resp.Error(); err != nil {
		return 0, fmt.Errorf("delete records: %w", err)
	}
	return n, nil
}
