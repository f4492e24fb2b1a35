package replay

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Counts is what a selection matches in a snapshot.
type Counts struct {
	// Matched counts the selected records: those to copy and those to park.
	Matched int64
	// Parked counts the selected records that go to the parked topic.
	Parked int64
	// ByPartition is Matched per partition, in the order of the snapshot.
	ByPartition []int64
	// ByClass is Matched per error class, for records that have one.
	ByClass map[string]int64
}

func newCounts(n int) Counts {
	return Counts{ByPartition: make([]int64, n), ByClass: map[string]int64{}}
}

func (c *Counts) add(i int, r *kgo.Record, a Action) {
	if a == Skip {
		return
	}
	c.Matched++
	c.ByPartition[i]++
	if a == Park {
		c.Parked++
	}
	if class := ClassOf(r); class != "" {
		c.ByClass[class]++
	}
}

// Count is a dry run: what sel matches in parts.
func Count(ctx context.Context, conn []kgo.Opt, parts []Partition, sel Selection) (Counts, error) {
	c := newCounts(len(parts))
	err := scan(ctx, conn, parts, func(i int, r *kgo.Record) bool {
		c.add(i, r, sel.Decide(r))
		return true
	})
	return c, err
}

// Cut applies a record limit to a snapshot: it keeps the first limit matches,
// partition by partition in the snapshot's order and in offset order within
// each, by moving End before the first match beyond the limit. The result is
// the snapshot a replay with a limit runs on; it is stored before the first
// copy, so a resumed replay selects the same records.
func Cut(ctx context.Context, conn []kgo.Opt, parts []Partition, sel Selection, limit int64) ([]Partition, Counts, error) {
	out := make([]Partition, len(parts))
	copy(out, parts)
	c := newCounts(len(parts))
	left := limit
	for i := range out {
		if left == 0 {
			out[i].End = out[i].Start
			continue
		}
		err := scan(ctx, conn, out[i:i+1], func(_ int, r *kgo.Record) bool {
			a := sel.Decide(r)
			if a == Skip {
				return true
			}
			if left == 0 {
				out[i].End = r.Offset // the first match beyond the limit
				return false
			}
			c.add(i, r, a)
			left--
			return true
		})
		if err != nil {
			return nil, Counts{}, err
		}
	}
	return out, c, nil
}
