package replay

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// Partition is one partition a replay reads, from Start to End (excluded).
type Partition struct {
	Topic     string
	Partition int32
	Start     int64
	End       int64
}

// OffsetRange bounds the offsets selected in one partition (both ends
// included; nil is open).
type OffsetRange struct {
	From, To *int64
}

// InvalidSelectionError is a selection the topics can't satisfy; Field names
// the StreamReplay field at fault.
type InvalidSelectionError struct {
	Field, Message string
}

func (e *InvalidSelectionError) Error() string { return e.Field + ": " + e.Message }

// Snapshot fixes what a replay reads: every partition of topics (only those in
// ranges, when ranges is not empty), from the first offset that can be
// selected to the last stable offset now. Records written later, including a
// redriven record that fails again and re-enters the dead-letter topic, are not
// part of the replay, so every replay ends. since, when set, moves each start
// to the first record at or after it (the broker's time index): no earlier
// offset holds a record that young.
func Snapshot(ctx context.Context, adm *kadm.Client, topics []string, ranges map[int32]OffsetRange, since time.Time) ([]Partition, error) {
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("list start offsets of %v: %w", topics, err)
	}
	// ListCommittedOffsets asks for read_committed ends: the last stable
	// offset, below which every transaction is decided.
	ends, err := adm.ListCommittedOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %v: %w", topics, err)
	}
	var after kadm.ListedOffsets
	if !since.IsZero() {
		if after, err = adm.ListOffsetsAfterMilli(ctx, since.UnixMilli(), topics...); err != nil {
			return nil, fmt.Errorf("list offsets after %s of %v: %w", since.Format(time.RFC3339), topics, err)
		}
	}
	var out []Partition
	for _, topic := range topics {
		tEnds, ok := ends[topic]
		if !ok || len(tEnds) == 0 {
			return nil, fmt.Errorf("topic %s does not exist", topic)
		}
		for p := range ranges {
			if _, ok := tEnds[p]; !ok {
				return nil, &InvalidSelectionError{Field: "spec.select.partitions",
					Message: fmt.Sprintf("partition %d does not exist: topic %s has %d partitions", p, topic, len(tEnds))}
			}
		}
		for p, e := range tEnds {
			rng, selected := ranges[p]
			if len(ranges) > 0 && !selected {
				continue
			}
			if e.Err != nil {
				return nil, fmt.Errorf("end offset of %s/%d: %w", topic, p, e.Err)
			}
			s, ok := starts.Lookup(topic, p)
			if !ok {
				return nil, fmt.Errorf("start offset of %s/%d: not listed", topic, p)
			}
			if s.Err != nil {
				return nil, fmt.Errorf("start offset of %s/%d: %w", topic, p, s.Err)
			}
			part := Partition{Topic: topic, Partition: p, Start: s.Offset, End: e.Offset}
			if a, ok := after.Lookup(topic, p); ok && a.Err == nil && a.Offset > part.Start {
				part.Start = a.Offset
			}
			part = clip(part, rng)
			out = append(out, part)
		}
	}
	slices.SortFunc(out, comparePartitions)
	return out, nil
}

// clip narrows a partition to an offset range.
func clip(p Partition, r OffsetRange) Partition {
	if r.From != nil && *r.From > p.Start {
		p.Start = *r.From
	}
	if r.To != nil && *r.To+1 < p.End {
		p.End = *r.To + 1
	}
	p.Start = min(p.Start, p.End)
	return p
}

func comparePartitions(a, b Partition) int {
	if a.Topic != b.Topic {
		if a.Topic < b.Topic {
			return -1
		}
		return 1
	}
	return int(a.Partition - b.Partition)
}
