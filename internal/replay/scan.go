package replay

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
)

// tp names a partition.
type tp struct {
	topic     string
	partition int32
}

// ReaderOpts are the options of every client that reads a replay's
// partitions: committed records only, and the transaction markers too, so that
// a partition whose last offset before its end is a marker is seen to end.
func ReaderOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxBytes(64 << 20),
		kgo.FetchMaxPartitionBytes(8 << 20),
		// A start that retention has deleted since the snapshot: read from what
		// is left.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	}
}

// reachedEnd reports whether record r is the last offset of p to read, or
// past it (the records after the snapshot's end).
func reachedEnd(r *kgo.Record, p Partition) bool { return r.Offset >= p.End-1 }

// scan reads each partition from its Start to its End (excluded) and calls fn
// for each record before End, control records included, in offset order per
// partition. fn returning false stops that partition. It returns when every
// partition is read.
func scan(ctx context.Context, conn []kgo.Opt, parts []Partition, fn func(i int, r *kgo.Record) bool) error {
	index := map[tp]int{}
	offsets := map[string]map[int32]kgo.Offset{}
	for i, p := range parts {
		if p.Start >= p.End {
			continue
		}
		index[tp{p.Topic, p.Partition}] = i
		if offsets[p.Topic] == nil {
			offsets[p.Topic] = map[int32]kgo.Offset{}
		}
		offsets[p.Topic][p.Partition] = kgo.NewOffset().At(p.Start)
	}
	if len(index) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(append(append(conn, ReaderOpts()...), kgo.ConsumePartitions(offsets))...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	left := len(index)
	for left > 0 {
		fetches := cl.PollRecords(ctx, 10000)
		if err := ctx.Err(); err != nil {
			return err
		}
		var fatal error
		fetches.EachError(func(topic string, p int32, err error) {
			if isFatalFetch(err) {
				fatal = fmt.Errorf("read %s/%d: %w", topic, p, err)
			}
		})
		if fatal != nil {
			return fatal
		}
		stop := map[string][]int32{}
		fetches.EachRecord(func(r *kgo.Record) {
			i, ok := index[tp{r.Topic, r.Partition}]
			if !ok {
				return // stopped earlier in this poll
			}
			p := parts[i]
			cont := r.Offset < p.End && fn(i, r)
			if !cont || reachedEnd(r, p) {
				delete(index, tp{r.Topic, r.Partition})
				stop[r.Topic] = append(stop[r.Topic], r.Partition)
				left--
			}
		})
		if len(stop) > 0 {
			cl.PauseFetchPartitions(stop)
		}
	}
	return nil
}

// isFatalFetch tells errors that end a read from those the client retries.
func isFatalFetch(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, kgo.ErrClientClosed)
}

// Scan reads parts in offset order per partition and calls fn for each data
// record (not the transaction markers) before the partitions' ends; fn
// returning false stops the whole scan. For the kubectl plugin's peeks.
func Scan(ctx context.Context, conn []kgo.Opt, parts []Partition, fn func(r *kgo.Record) bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopped := false
	err := scan(ctx, conn, parts, func(_ int, r *kgo.Record) bool {
		if stopped || r.Attrs.IsControl() {
			return !stopped
		}
		if !fn(r) {
			stopped = true
			cancel()
			return false
		}
		return true
	})
	if stopped {
		return nil
	}
	return err
}
