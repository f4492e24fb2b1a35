package scale

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// loadConfig is the traffic of a live fleet.
type loadConfig struct {
	// Rate is the records per second written to all topics together, one
	// record to each topic in turn.
	Rate int
	// MinTrail and MaxTrail bound how far a commit trails its topic's end:
	// each commit is MinTrail..MaxTrail records short of it, drawn anew for
	// every commit (and skipped when that is not past the previous commit).
	// With MinTrail ≥ 1 the lag never reads 0; with 0 a group catches up now
	// and then, as one that keeps up does.
	MinTrail, MaxTrail int64
	// CommitInterval is how often every group commits.
	CommitInterval time.Duration
	// RecordBytes is the size of a record's value.
	RecordBytes int
}

// liveLoad writes records to every source topic round-robin at a steady total
// rate (one single-partition topic per group) and commits, for every group,
// an offset that trails the topic's end by a varying amount: a consumer that
// keeps up, unevenly. The groups have no members: a broker takes a "simple"
// commit (generation -1, no member ID) for a group with no members, kfake as
// Kafka does, so one client commits for all of them. The committed offsets
// only move forward.
type liveLoad struct {
	cfg    loadConfig
	topics []string
	groups []string
	ids    []kadm.TopicID

	producer, committer *kgo.Client
	cancel              context.CancelFunc
	wg                  sync.WaitGroup
	start               time.Time

	ends      []atomic.Int64 // per topic: offset after the last acknowledged record
	produced  atomic.Int64
	commits   atomic.Int64
	committed []int64 // per group, the last commit (-1: none); committer goroutine only
	errOnce   sync.Once
	err       error
}

// loadStats is what a load did.
type loadStats struct {
	Records, Commits int64
	Elapsed          time.Duration
}

// startLiveLoad starts the producer and the committer; groups[i] commits on
// topics[i], which must exist with one partition.
func startLiveLoad(ctx context.Context, seeds, topics, groups []string, cfg loadConfig) (*liveLoad, error) {
	if len(topics) != len(groups) || len(topics) == 0 {
		return nil, fmt.Errorf("%d topics for %d groups", len(topics), len(groups))
	}
	if cfg.MinTrail < 0 || cfg.MaxTrail < cfg.MinTrail {
		return nil, fmt.Errorf("trail %d..%d", cfg.MinTrail, cfg.MaxTrail)
	}
	producer, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		return nil, err
	}
	committer, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		producer.Close()
		return nil, err
	}
	l := &liveLoad{
		cfg: cfg, topics: topics, groups: groups,
		producer: producer, committer: committer,
		ends: make([]atomic.Int64, len(topics)), committed: make([]int64, len(groups)),
	}
	for i := range l.committed {
		l.committed[i] = -1
	}
	// OffsetCommit v10 names topics by ID; looked up once, not per commit, so
	// that the load's Metadata requests don't mix with the operator's.
	details, err := kadm.NewClient(committer).ListTopics(ctx, topics...)
	if err == nil {
		err = details.Error()
	}
	if err != nil {
		l.closeClients()
		return nil, fmt.Errorf("list topics: %w", err)
	}
	l.ids = make([]kadm.TopicID, len(topics))
	for i, t := range topics {
		l.ids[i] = details[t].ID
	}

	ctx, l.cancel = context.WithCancel(ctx)
	l.start = time.Now()
	l.wg.Add(2)
	go func() { defer l.wg.Done(); l.produce(ctx) }()
	go func() { defer l.wg.Done(); l.commit(ctx) }()
	return l, nil
}

// stop ends the load and says what it did; the error is the first failed
// produce or commit.
func (l *liveLoad) stop() (loadStats, error) {
	l.cancel()
	l.wg.Wait()
	if err := l.producer.Flush(context.Background()); err != nil { // the produce callbacks have run
		l.fail(err)
	}
	st := loadStats{Records: l.produced.Load(), Commits: l.commits.Load(), Elapsed: time.Since(l.start)}
	l.closeClients()
	return st, l.err
}

func (l *liveLoad) closeClients() {
	l.producer.Close()
	l.committer.Close()
}

func (l *liveLoad) fail(err error) {
	l.errOnce.Do(func() { l.err = err })
}

// produce writes Rate records per second, in ticks of 10 ms, each to the next
// topic in turn.
func (l *liveLoad) produce(ctx context.Context) {
	const tick = 10 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	value := make([]byte, l.cfg.RecordBytes)
	var sent int64
	next := 0
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			due := int64(now.Sub(l.start).Seconds() * float64(l.cfg.Rate))
			for ; sent < due; sent++ {
				i := next
				next = (next + 1) % len(l.topics)
				l.producer.Produce(ctx, &kgo.Record{Topic: l.topics[i], Value: value}, func(r *kgo.Record, err error) {
					switch {
					case errors.Is(err, context.Canceled):
					case err != nil:
						l.fail(fmt.Errorf("produce to %s: %w", r.Topic, err))
					default:
						// A partition's promises run in offset order.
						l.ends[i].Store(r.Offset + 1)
						l.produced.Add(1)
					}
				})
			}
		}
	}
}

// commit commits every group once per CommitInterval, at its topic's end
// minus a fresh random trail, when that is past the group's last commit.
func (l *liveLoad) commit(ctx context.Context) {
	t := time.NewTicker(l.cfg.CommitInterval)
	defer t.Stop()
	rng := rand.New(rand.NewPCG(12, 7)) // the same trails in every run
	for {
		for i := range l.groups {
			trail := l.cfg.MinTrail + rng.Int64N(l.cfg.MaxTrail-l.cfg.MinTrail+1)
			at := max(l.ends[i].Load()-trail, 0)
			if at <= l.committed[i] {
				continue
			}
			if err := l.commitOne(ctx, i, at); err != nil {
				if ctx.Err() == nil {
					l.fail(err)
				}
				return
			}
			l.committed[i] = at
			l.commits.Add(1)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// commitOne is one simple OffsetCommit (generation -1, no member) of
// partition 0 of group i's topic.
func (l *liveLoad) commitOne(ctx context.Context, i int, at int64) error {
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group = l.groups[i]
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic, rt.TopicID = l.topics[i], l.ids[i]
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset = 0, at
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, l.committer)
	if err != nil {
		return fmt.Errorf("commit %s: %w", l.groups[i], err)
	}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return fmt.Errorf("commit %s at %d: %w", l.groups[i], at, err)
			}
		}
	}
	return nil
}

// TestLiveLoadMovesLagEverySample checks the load BenchmarkFleetLive runs:
// every group has committed offsets, its lag (as kadm reads it, like the
// operator) is never 0 and stays within the trail plus what arrives between
// commits, and from one poll interval to the next both the end and the
// committed offset move.
func TestLiveLoadMovesLagEverySample(t *testing.T) {
	ctx := context.Background()
	kafka, err := kfake.NewCluster(kfake.NumBrokers(3))
	if err != nil {
		t.Fatal(err)
	}
	defer kafka.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafka.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topics := []string{"live-0", "live-1", "live-2"}
	groups := []string{"g-0", "g-1", "g-2"}
	if _, err := adm.CreateTopics(ctx, 1, 3, nil, topics...); err != nil {
		t.Fatal(err)
	}
	cfg := loadConfig{Rate: 300, MinTrail: 1, MaxTrail: 50, CommitInterval: time.Second, RecordBytes: 100}
	l, err := startLiveLoad(ctx, kafka.ListenAddrs(), topics, groups, cfg)
	if err != nil {
		t.Fatal(err)
	}

	time.Sleep(2 * time.Second) // a few commits
	sample := func() kadm.DescribedGroupLags {
		lags, err := adm.Lag(ctx, groups...)
		if err != nil {
			t.Fatal(err)
		}
		return lags
	}
	perTopicPerCommit := int64(cfg.Rate/len(topics)) * int64(cfg.CommitInterval/time.Second)
	first := sample()
	time.Sleep(sluicev1.DefaultPollInterval)
	second := sample()
	st, err := l.stop()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d records, %d commits in %s", st.Records, st.Commits, st.Elapsed)

	for i, g := range groups {
		a, b := first[g].Lag[topics[i]][0], second[g].Lag[topics[i]][0]
		for _, m := range []kadm.GroupMemberLag{a, b} {
			if m.Err != nil || m.Commit.At < 0 {
				t.Fatalf("group %s: commit %+v, err %v", g, m.Commit, m.Err)
			}
			if m.Lag < 1 || m.Lag > cfg.MaxTrail+2*perTopicPerCommit {
				t.Errorf("group %s: lag %d, want 1..%d", g, m.Lag, cfg.MaxTrail+2*perTopicPerCommit)
			}
		}
		if b.End.Offset <= a.End.Offset || b.Commit.At <= a.Commit.At {
			t.Errorf("group %s: end %d → %d, committed %d → %d over a poll interval; want both to move",
				g, a.End.Offset, b.End.Offset, a.Commit.At, b.Commit.At)
		}
	}
}
