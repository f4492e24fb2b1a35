package replay

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/time/rate"
)

// ParkedTopic is where a replay parks the records of topic that reached
// MaxRedrives.
func ParkedTopic(topic string) string { return topic + ".parked" }

// Redrive copies the selected records of a snapshot to a target topic,
// exactly once.
//
// Its position is a consumer group of its own (Group): each poll's copies
// and the group's offsets are committed in one Kafka transaction, so after a
// crash the next run resumes right after the last committed copy and a
// read_committed reader of the target sees each selected record once. A new
// run's transactional producer (same TransactionalID) fences a zombie of the
// previous one, and the group generation fences its offset commits (KIP-447).
type Redrive struct {
	// Conn is the kgo options that reach the cluster (brokers, TLS, SASL).
	Conn []kgo.Opt
	// Group holds the replay's position; TransactionalID names its producer.
	Group, TransactionalID string
	// Parts is the snapshot.
	Parts []Partition
	// Select decides per record.
	Select Selection
	// Target is the topic the copies go to, Kind how they must look there.
	Target string
	Kind   TargetKind
	// By is "<namespace>/<name>" of the replay, written on each copy.
	By string
	// RateLimit caps copies per second; 0 is no cap.
	RateLimit int
	// Progress, when set, is called after each committed transaction with the
	// totals so far.
	Progress func(Progress)
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Progress is how far a redrive got: records copied to the target and to the
// parked topic, counting what earlier runs of the same replay committed.
type Progress struct {
	Done, Parked int64
}

// Run copies until every partition of the snapshot is read, and returns the
// totals. It resumes from the group's committed offsets when it has some.
func (d *Redrive) Run(ctx context.Context) (Progress, error) {
	if d.Now == nil {
		d.Now = time.Now
	}
	parts, resumed, err := d.position(ctx)
	if err != nil {
		return Progress{}, err
	}
	// What earlier runs committed, counted with the same decisions.
	var total Progress
	if len(resumed) > 0 {
		c, err := Count(ctx, d.Conn, resumed, d.Select)
		if err != nil {
			return Progress{}, fmt.Errorf("count what earlier runs copied: %w", err)
		}
		total = Progress{Done: c.Matched - c.Parked, Parked: c.Parked}
	}
	left := map[tp]Partition{}
	for _, p := range parts {
		if p.Start < p.End {
			left[tp{p.Topic, p.Partition}] = p
		}
	}
	if d.Progress != nil {
		d.Progress(total)
	}
	if len(left) == 0 {
		return total, nil
	}
	n, err := d.copyAll(ctx, left, total)
	return n, err
}

// position makes sure the group holds a position for every partition of
// the snapshot, committing the snapshot's starts on the first run, and returns
// what is left to read and, on a resumed run, what earlier runs read.
func (d *Redrive) position(ctx context.Context) (left, done []Partition, err error) {
	cl, err := kgo.NewClient(d.Conn...)
	if err != nil {
		return nil, nil, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	committed, err := UntilCoordinatorSettles(ctx, func() (kadm.OffsetResponses, error) { return adm.FetchOffsets(ctx, d.Group) })
	if errors.Is(err, kerr.GroupIDNotFound) {
		committed, err = nil, nil // kfake's answer for a group that never committed
	}
	if err != nil {
		return nil, nil, fmt.Errorf("fetch offsets of group %s: %w", d.Group, err)
	}
	if err := committed.Error(); err != nil {
		return nil, nil, fmt.Errorf("fetch offsets of group %s: %w", d.Group, err)
	}
	if len(committed) == 0 {
		// First run: the group starts at the snapshot's starts. Partitions of
		// the topics outside the snapshot start at their end, so the group
		// never reads them.
		if err := d.commitStarts(ctx, adm); err != nil {
			return nil, nil, err
		}
		return d.Parts, nil, nil
	}
	for _, p := range d.Parts {
		c, ok := committed.Lookup(p.Topic, p.Partition)
		at := p.Start
		if ok && c.At > at {
			at = min(c.At, p.End)
		}
		done = append(done, Partition{Topic: p.Topic, Partition: p.Partition, Start: p.Start, End: at})
		left = append(left, Partition{Topic: p.Topic, Partition: p.Partition, Start: at, End: p.End})
	}
	return left, done, nil
}

func (d *Redrive) commitStarts(ctx context.Context, adm *kadm.Client) error {
	topics := map[string]bool{}
	offsets := kadm.Offsets{}
	for _, p := range d.Parts {
		topics[p.Topic] = true
		offsets.AddOffset(p.Topic, p.Partition, p.Start, -1)
	}
	var names []string
	for t := range topics {
		names = append(names, t)
	}
	ends, err := adm.ListEndOffsets(ctx, names...)
	if err != nil {
		return fmt.Errorf("list end offsets of %v: %w", names, err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		if _, ok := offsets.Lookup(o.Topic, o.Partition); !ok && o.Err == nil {
			offsets.AddOffset(o.Topic, o.Partition, o.Offset, -1)
		}
	})
	_, err = UntilCoordinatorSettles(ctx, func() (kadm.OffsetResponses, error) {
		resp, err := adm.CommitOffsets(ctx, d.Group, offsets)
		if err == nil {
			err = resp.Error()
		}
		return resp, err
	})
	if err != nil {
		return fmt.Errorf("commit the starting offsets of group %s: %w", d.Group, err)
	}
	return nil
}

// copyAll is the transactional loop.
func (d *Redrive) copyAll(ctx context.Context, left map[tp]Partition, total Progress) (Progress, error) {
	topics := map[string]bool{}
	for _, p := range d.Parts {
		topics[p.Topic] = true
	}
	var names []string
	for t := range topics {
		names = append(names, t)
	}
	opts := append(append([]kgo.Opt{}, d.Conn...), ReaderOpts()...)
	opts = append(opts,
		kgo.ConsumerGroup(d.Group),
		kgo.ConsumeTopics(names...),
		kgo.TransactionalID(d.TransactionalID),
		kgo.TransactionTimeout(time.Minute),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// A run that crashed holds its membership until the session times out;
		// the next run can only read once it has.
		kgo.SessionTimeout(6*time.Second),
		kgo.HeartbeatInterval(time.Second),
		kgo.ProducerLinger(time.Millisecond),
	)
	sess, err := kgo.NewGroupTransactSession(opts...)
	if err != nil {
		return total, fmt.Errorf("kafka transactional session: %w", err)
	}
	defer sess.Close()
	var limiter *rate.Limiter
	if d.RateLimit > 0 {
		limiter = rate.NewLimiter(rate.Limit(d.RateLimit), d.RateLimit)
	}
	batch := 5000
	if d.RateLimit > 0 {
		batch = max(1, min(batch, d.RateLimit))
	}
	for len(left) > 0 {
		fetches := sess.PollRecords(ctx, batch)
		if err := ctx.Err(); err != nil {
			return total, err
		}
		if fetches.IsClientClosed() {
			return total, kgo.ErrClientClosed
		}
		recs := fetches.Records()
		if len(recs) == 0 {
			continue
		}
		if err := sess.Begin(); err != nil {
			return total, fmt.Errorf("begin transaction: %w", err)
		}
		step, finished, failed := d.copyBatch(ctx, sess, recs, left, limiter)
		how := kgo.TryCommit
		if failed != nil {
			how = kgo.TryAbort
		}
		committed, err := sess.End(context.WithoutCancel(ctx), how)
		if err != nil {
			return total, fmt.Errorf("end transaction: %w", err)
		}
		if failed != nil && errors.Is(failed, ctx.Err()) {
			return total, ctx.Err()
		}
		if !committed {
			continue // aborted: the session rewinds to the last committed position
		}
		total.Done += step.Done
		total.Parked += step.Parked
		var pause = map[string][]int32{}
		for _, k := range finished {
			delete(left, k) // a no-op for partitions outside the snapshot
			pause[k.topic] = append(pause[k.topic], k.partition)
		}
		sess.Client().PauseFetchPartitions(pause)
		if d.Progress != nil {
			d.Progress(total)
		}
	}
	return total, nil
}

// copyBatch produces one poll's copies into the open transaction and waits for
// them. It returns what the batch copied, the partitions it finished and the
// first failure (which aborts the transaction).
func (d *Redrive) copyBatch(ctx context.Context, sess *kgo.GroupTransactSession, recs []*kgo.Record, left map[tp]Partition, limiter *rate.Limiter) (Progress, []tp, error) {
	var (
		step     Progress
		finished []tp
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	now := d.Now()
	done := map[tp]bool{}
	for _, r := range recs {
		k := tp{r.Topic, r.Partition}
		p, ok := left[k]
		if !ok || r.Offset >= p.End {
			// Outside the snapshot, finished, or past its end: not this replay's.
			if !done[k] {
				done[k] = true
				finished = append(finished, k)
			}
			continue
		}
		if reachedEnd(r, p) && !done[k] {
			done[k] = true
			finished = append(finished, k)
		}
		var out *kgo.Record
		switch d.Select.Decide(r) {
		case Copy:
			out = CopyOf(r, d.Target, d.Kind, d.By, now)
			step.Done++
		case Park:
			out = CopyOf(r, ParkedTopic(r.Topic), ToParked, d.By, now)
			step.Parked++
		default:
			continue
		}
		if limiter != nil {
			if err := limiter.Wait(ctx); err != nil {
				mu.Lock()
				firstErr = err
				mu.Unlock()
				break
			}
		}
		wg.Add(1)
		sess.Produce(ctx, out, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("copy %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return step, finished, firstErr
}
