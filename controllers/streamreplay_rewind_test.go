package controllers

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/testpg"
	"github.com/sluice-dev/sluice/worker/sink"
)

// rewindFixture is a pipeline on a 3-partition source of 20 records per
// partition: offsets 0-9 an hour old, 10-19 ten minutes old. recent is the
// time between them.
func rewindFixture(t *testing.T, edit func(*sluicev1.StreamPipeline)) (k *testKafka, sp *sluicev1.StreamPipeline, recent time.Time) {
	t.Helper()
	g := NewWithT(t)
	k = newKafka(t, 3)
	ns := newNamespace(t)
	sp = logPipeline(ns, "orders")
	sp.Spec.Kafka.BootstrapServers = k.cluster.ListenAddrs()
	if edit != nil {
		edit(sp)
	}
	create(t, sp)
	now := time.Now()
	k.produce(t, "orders", []int32{0, 1, 2}, 10, now.Add(-time.Hour))
	k.produce(t, "orders", []int32{0, 1, 2}, 10, now.Add(-10*time.Minute))
	g.Eventually(func(g Gomega) {
		g.Expect(getDeployment(g, sp).Spec.Replicas).To(HaveValue(BeNumerically(">=", 1)))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	return k, getPipeline(g, ns, "orders"), now.Add(-30 * time.Minute)
}

// groupMember joins group and consumes topic to its end, committing, and
// stays in the group until the returned stop is called (it leaves then).
func groupMember(t *testing.T, k *testKafka, group, topic string, records int) (stop func()) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.cluster.ListenAddrs()...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for n := 0; n < records; {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("the group member read %d of %d records", n, records)
		}
		n += fs.NumRecords()
	}
	if err := cl.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { // keep heartbeating
		defer close(done)
		for {
			pctx, pcancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			cl.PollFetches(pctx)
			pcancel()
			select {
			case <-done:
				return
			default:
			}
			if cl.Context().Err() != nil {
				return
			}
		}
	}()
	var stopped bool
	stop = func() {
		if !stopped {
			stopped = true
			cl.Close() // leaves the group
		}
	}
	t.Cleanup(stop)
	return stop
}

func committedOf(g Gomega, k *testKafka, group string) map[int32]int64 {
	fetched, err := k.adm.FetchOffsetsForTopics(context.Background(), group, "orders")
	g.Expect(err).NotTo(HaveOccurred())
	out := map[int32]int64{}
	for p, r := range fetched["orders"] {
		if r.At >= 0 {
			out[p] = r.At
		}
	}
	return out
}

func rewindTo(sp *sluicev1.StreamPipeline, name string, edit func(*sluicev1.StreamReplay)) *sluicev1.StreamReplay {
	return newReplay(sp, name, func(sr *sluicev1.StreamReplay) {
		sr.Spec.Mode, sr.Spec.From = sluicev1.ReplayModeRewind, sluicev1.ReplayFromSource
		edit(sr)
	})
}

// TestRewindHoldsTheWorkersAndMovesTheGroupBack: a rewind holds the workers at
// zero, waits while the group has a member (nothing moves), sets every
// partition to the first record at or after select.since, records where each
// was, and releases the workers; a second rewind of the pipeline waits for
// the first, and then leaves partitions that are already there alone.
func TestRewindHoldsTheWorkersAndMovesTheGroupBack(t *testing.T) {
	g := NewWithT(t)
	k, sp, recent := rewindFixture(t, nil)
	group := sp.ConsumerGroup()
	stop := groupMember(t, k, group, "orders", 60)
	g.Expect(committedOf(g, k, group)).To(Equal(map[int32]int64{0: 20, 1: 20, 2: 20}))

	since := metav1.NewTime(recent)
	sr := rewindTo(sp, "tuesday", func(sr *sluicev1.StreamReplay) { sr.Spec.Select.Since = &since })
	g.Expect(k8s.Create(context.Background(), sr)).To(Succeed())
	g.Eventually(func(g Gomega) {
		got := getReplay(g, sp.Namespace, sr.Name)
		g.Expect(got.Status.Phase).To(Equal(sluicev1.ReplayPhaseRunning))
		g.Expect(got.Status.Message).To(ContainSubstring("with 1 members"), "it names what it waits for")
		g.Expect(getDeployment(g, sp).Spec.Replicas).To(HaveValue(BeZero()), "the workers are held at 0")
		ready := condition(getPipeline(g, sp.Namespace, sp.Name), sluicev1.ConditionReady)
		g.Expect(ready.Reason).To(Equal(sluicev1.ReasonRewinding))
		g.Expect(ready.Message).To(ContainSubstring("StreamReplay tuesday"))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	g.Expect(getPipeline(g, sp.Namespace, sp.Name).Spec.Suspend).To(BeFalse(), "the pipeline's spec is not touched")

	second := rewindTo(sp, "again", func(sr *sluicev1.StreamReplay) { sr.Spec.Select.Since = &since })
	g.Expect(k8s.Create(context.Background(), second)).To(Succeed())
	g.Consistently(func(g Gomega) {
		g.Expect(committedOf(g, k, group)).To(Equal(map[int32]int64{0: 20, 1: 20, 2: 20}), "nothing moves while the group has a member")
		g.Expect(getReplay(g, sp.Namespace, sr.Name).Status.Phase).To(Equal(sluicev1.ReplayPhaseRunning))
	}).WithTimeout(2 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
	g.Eventually(func(g Gomega) {
		got := getReplay(g, sp.Namespace, second.Name)
		g.Expect(got.Status.Phase).To(Equal(sluicev1.ReplayPhasePending))
		g.Expect(got.Status.Message).To(ContainSubstring("StreamReplay tuesday is rewinding"))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())

	stop()
	g.Eventually(func(g Gomega) {
		got := getReplay(g, sp.Namespace, sr.Name)
		g.Expect(got.Status.Phase).To(Equal(sluicev1.ReplayPhaseComplete), got.Status.Message)
		g.Expect(replayCondition(got, sluicev1.ConditionComplete).Reason).To(Equal(ReasonRewound))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	got := getReplay(g, sp.Namespace, sr.Name)
	g.Expect(committedOf(g, k, group)).To(Equal(map[int32]int64{0: 10, 1: 10, 2: 10}))
	g.Expect(got.Status.Done).To(Equal(int64(30)))
	g.Expect(got.Status.Matched).To(HaveValue(Equal(int64(30))))
	g.Expect(got.Status.Snapshot).To(HaveLen(3))
	for _, p := range got.Status.Snapshot {
		g.Expect(p.Start).To(Equal(int64(10)), "partition %d", p.Partition)
		g.Expect(p.Committed).To(HaveValue(Equal(int64(20))), "where partition %d was", p.Partition)
		g.Expect(p.Matched).To(HaveValue(Equal(int64(10))))
	}
	g.Expect(got.Status.Message).To(ContainSubstring("3 partitions back (0: 20 → 10, 1: 20 → 10, 2: 20 → 10)"))

	g.Eventually(func(g Gomega) {
		g.Expect(getDeployment(g, sp).Spec.Replicas).To(HaveValue(BeNumerically(">=", 1)), "the workers are released")
		g.Expect(condition(getPipeline(g, sp.Namespace, sp.Name), sluicev1.ConditionReady).Reason).NotTo(Equal(sluicev1.ReasonRewinding))
		g.Expect(eventReasons(g, sp)).To(ContainElements(sluicev1.EventSuspended, sluicev1.EventResumed))
		g.Expect(replayEventReasons(g, got)).To(ContainElements(ReasonReplayStarted, ReasonRewound))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())

	// The second starts now; the group is already at since: nothing moves.
	g.Eventually(func(g Gomega) {
		got := getReplay(g, sp.Namespace, second.Name)
		g.Expect(got.Status.Phase).To(Equal(sluicev1.ReplayPhaseComplete), got.Status.Message)
		g.Expect(got.Status.Done).To(BeZero())
		g.Expect(got.Status.Message).To(ContainSubstring("0 partitions back, 3 left where they were"))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	g.Expect(committedOf(g, k, group)).To(Equal(map[int32]int64{0: 10, 1: 10, 2: 10}))
}

// TestRewindToOffsetsNeverSkipsRecords: offsets per partition; a partition
// whose group is already before its offset is left (moving it would skip
// records), one without a commit gets the offset, unlisted ones are not
// touched. A dry run says all this and moves nothing, without stopping the
// workers.
func TestRewindToOffsetsNeverSkipsRecords(t *testing.T) {
	g := NewWithT(t)
	k, sp, _ := rewindFixture(t, nil)
	group := sp.ConsumerGroup()
	g.Expect(k.adm.CommitAllOffsets(context.Background(), group, kadm.OffsetsFromRecords(
		kgo.Record{Topic: "orders", Partition: 0, Offset: 19}, kgo.Record{Topic: "orders", Partition: 1, Offset: 2},
		kgo.Record{Topic: "orders", Partition: 2, Offset: 14}))).To(Succeed()) // committed 20, 3, 15
	g.Expect(committedOf(g, k, group)).To(Equal(map[int32]int64{0: 20, 1: 3, 2: 15}))
	sel := func(sr *sluicev1.StreamReplay) {
		sr.Spec.Select.Partitions = []sluicev1.ReplayPartitionRange{
			{Partition: 0, OffsetRange: sluicev1.OffsetRange{From: ptr.To(int64(5))}},
			{Partition: 1, OffsetRange: sluicev1.OffsetRange{From: ptr.To(int64(8))}},
		}
	}

	dry := rewindTo(sp, "count", func(sr *sluicev1.StreamReplay) { sel(sr); sr.Spec.DryRun = true })
	g.Expect(k8s.Create(context.Background(), dry)).To(Succeed())
	g.Eventually(func(g Gomega) {
		got := getReplay(g, sp.Namespace, dry.Name)
		g.Expect(got.Status.Phase).To(Equal(sluicev1.ReplayPhaseComplete), got.Status.Message)
		g.Expect(got.Status.Matched).To(HaveValue(Equal(int64(15))))
		g.Expect(got.Status.Message).To(ContainSubstring("dry run"))
		g.Expect(got.Status.Message).To(ContainSubstring("1 partitions back (0: 20 → 5), 1 left where they were"))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	g.Expect(committedOf(g, k, group)).To(Equal(map[int32]int64{0: 20, 1: 3, 2: 15}), "a dry run moves nothing")
	g.Expect(getDeployment(g, sp).Spec.Replicas).To(HaveValue(BeNumerically(">=", 1)), "a dry run does not stop the workers")

	sr := rewindTo(sp, "offsets", sel)
	g.Expect(k8s.Create(context.Background(), sr)).To(Succeed())
	g.Eventually(func(g Gomega) {
		got := getReplay(g, sp.Namespace, sr.Name)
		g.Expect(got.Status.Phase).To(Equal(sluicev1.ReplayPhaseComplete), got.Status.Message)
		g.Expect(got.Status.Done).To(Equal(int64(15)))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	g.Expect(committedOf(g, k, group)).To(Equal(map[int32]int64{0: 5, 1: 3, 2: 15}), "1 is not moved forward past 3..7; 2 is not listed")

	// A group without commits on a partition gets the offset.
	fresh := rewindTo(sp, "fresh", func(sr *sluicev1.StreamReplay) {
		sr.Spec.Select.Partitions = []sluicev1.ReplayPartitionRange{{Partition: 0, OffsetRange: sluicev1.OffsetRange{From: ptr.To(int64(7))}}}
	})
	_, err := k.adm.DeleteOffsets(context.Background(), group, kadm.TopicsSet{"orders": {0: {}, 1: {}, 2: {}}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(k8s.Create(context.Background(), fresh)).To(Succeed())
	g.Eventually(func(g Gomega) {
		got := getReplay(g, sp.Namespace, fresh.Name)
		g.Expect(got.Status.Phase).To(Equal(sluicev1.ReplayPhaseComplete), got.Status.Message)
		g.Expect(got.Status.Message).To(ContainSubstring("0: none → 7"))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	g.Expect(committedOf(g, k, group)).To(HaveKeyWithValue(int32(0), int64(7)))
}

// TestRewindThatCantRunFailsNamingTheField: a share group has no positions to
// rewind; a partition the topic lacks is refused.
func TestRewindThatCantRunFailsNamingTheField(t *testing.T) {
	g := NewWithT(t)
	_, sp, recent := rewindFixture(t, func(sp *sluicev1.StreamPipeline) {
		sp.Spec.Source.GroupType, sp.Spec.Processing.Ordering = sluicev1.GroupTypeShare, sluicev1.OrderingUnordered
	})
	since := metav1.NewTime(recent)
	share := rewindTo(sp, "share", func(sr *sluicev1.StreamReplay) { sr.Spec.Select.Since = &since })
	g.Expect(k8s.Create(context.Background(), share)).To(Succeed())
	_, plain, _ := rewindFixture(t, nil)
	p9 := rewindTo(plain, "p9", func(sr *sluicev1.StreamReplay) {
		sr.Spec.Select.Partitions = []sluicev1.ReplayPartitionRange{{Partition: 9, OffsetRange: sluicev1.OffsetRange{From: ptr.To(int64(0))}}}
	})
	g.Expect(k8s.Create(context.Background(), p9)).To(Succeed())
	for sr, want := range map[*sluicev1.StreamReplay]string{
		share: "spec.mode: pipeline orders reads as a share group",
		p9:    "spec.select.partitions: partition 9 does not exist",
	} {
		g.Eventually(func(g Gomega) {
			got := getReplay(g, sr.Namespace, sr.Name)
			g.Expect(got.Status.Phase).To(Equal(sluicev1.ReplayPhaseFailed))
			c := replayCondition(got, sluicev1.ConditionFailed)
			g.Expect(c.Reason).To(Equal(ReasonInvalidSelection))
			g.Expect(c.Message).To(ContainSubstring(want))
		}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	}
	g.Eventually(func(g Gomega) {
		g.Expect(getDeployment(g, plain).Spec.Replicas).To(HaveValue(BeNumerically(">=", 1)), "a failed rewind holds nothing")
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
}

// TestRewindOfExactlyOncePostgresMovesTheDatabasesOffsets: with ExactlyOnce
// and the postgres sink the database is where the workers resume, so the
// rewind reads the position there (not Kafka's, which lags), moves the rows
// and Kafka's commits, and clears the done marks of the records read again
// (or they would be taken for copies already written), keeping pending ones
// and those before the point.
func TestRewindOfExactlyOncePostgresMovesTheDatabasesOffsets(t *testing.T) {
	g := NewWithT(t)
	pg, err := testpg.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Stop() })
	dsn, db := pg.NewDatabase(t, "rewind", `CREATE TABLE orders_out (id text, payload jsonb)`)
	k, sp, recent := rewindFixture(t, func(sp *sluicev1.StreamPipeline) {
		sp.Spec.Sink = sluicev1.SinkSpec{Postgres: &sluicev1.PostgresSink{DSNSecretRef: sluicev1.SecretKeyRef{Name: "pg", Key: "dsn"}, Table: "orders_out"}}
		sp.Spec.Delivery.Semantics = sluicev1.ExactlyOnce
		g.Expect(k8s.Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: sp.Namespace, Name: "pg"},
			Data: map[string][]byte{"dsn": []byte(dsn)}})).To(Succeed())
	})
	group := sp.ConsumerGroup()
	ctx := context.Background()
	// The tables and rows a worker would have left: the database at 20,
	// Kafka's best-effort commit behind it at 18.
	p, err := sink.NewPostgres(ctx, sink.PostgresOptions{DSN: dsn, Table: "orders_out", KeyColumn: "id", PayloadColumn: "payload", ExactlyOnce: true})
	g.Expect(err).NotTo(HaveOccurred())
	_, err = p.InitOffsets(ctx, group, map[string]map[int32]int64{"orders": {0: 20, 1: 20, 2: 20}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.Close()).To(Succeed())
	_, err = db.Exec(ctx, `INSERT INTO sluice_retries (consumer_group, topic, partition, "offset", done) VALUES
		($1, 'orders', 0, 12, true), ($1, 'orders', 0, 5, true), ($1, 'orders', 1, 15, false)`, group)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(k.adm.CommitAllOffsets(ctx, group, kadm.OffsetsFromRecords(
		kgo.Record{Topic: "orders", Partition: 0, Offset: 17}, kgo.Record{Topic: "orders", Partition: 1, Offset: 17},
		kgo.Record{Topic: "orders", Partition: 2, Offset: 17}))).To(Succeed())

	since := metav1.NewTime(recent)
	sr := rewindTo(sp, "db", func(sr *sluicev1.StreamReplay) { sr.Spec.Select.Since = &since })
	g.Expect(k8s.Create(ctx, sr)).To(Succeed())
	g.Eventually(func(g Gomega) {
		got := getReplay(g, sp.Namespace, sr.Name)
		g.Expect(got.Status.Phase).To(Equal(sluicev1.ReplayPhaseComplete), got.Status.Message)
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	got := getReplay(g, sp.Namespace, sr.Name)
	g.Expect(got.Status.Done).To(Equal(int64(30)), "20 − 10 on each partition: the database's position, not Kafka's 18")
	for _, part := range got.Status.Snapshot {
		g.Expect(part.Committed).To(HaveValue(Equal(int64(20))), "partition %d", part.Partition)
	}
	stored, exists, err := sink.StoredOffsets(ctx, dsn, "orders_out", group, "orders")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(exists).To(BeTrue())
	g.Expect(stored).To(Equal(map[int32]int64{0: 10, 1: 10, 2: 10}))
	g.Expect(committedOf(g, k, group)).To(Equal(map[int32]int64{0: 10, 1: 10, 2: 10}))
	rows, err := db.Query(ctx, `SELECT partition, "offset", done FROM sluice_retries ORDER BY partition, "offset"`)
	g.Expect(err).NotTo(HaveOccurred())
	type mark struct {
		p    int32
		o    int64
		done bool
	}
	var marks []mark
	for rows.Next() {
		var m mark
		g.Expect(rows.Scan(&m.p, &m.o, &m.done)).To(Succeed())
		marks = append(marks, m)
	}
	g.Expect(rows.Err()).NotTo(HaveOccurred())
	g.Expect(marks).To(Equal([]mark{{0, 5, true}, {1, 15, false}}), "the done mark at 12 is cleared; 5 (before the point) and the pending one stay")
}
