package controllers

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/twmb/franz-go/pkg/kgo"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/worker/failure"
)

// replayFixture is a pipeline whose topics are provisioned, with n dead
// letters over its DLQ's partitions: every third a poison pill.
func replayFixture(t *testing.T, n int) (*testKafka, *sluicev1.StreamPipeline) {
	t.Helper()
	g := NewWithT(t)
	k := newKafka(t, 3)
	ns := newNamespace(t)
	sp := logPipeline(ns, "orders")
	sp.Spec.Kafka.BootstrapServers = k.cluster.ListenAddrs()
	create(t, sp)
	g.Eventually(func(g Gomega) {
		g.Expect(condition(getPipeline(g, ns, "orders"), sluicev1.ConditionTopicsReady).Status).To(Equal(metav1.ConditionTrue))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	var rs []*kgo.Record
	for i := range n {
		class := "transient"
		if i%3 == 0 {
			class = "poison"
		}
		rs = append(rs, &kgo.Record{Topic: sp.DeadLetterTopic(), Partition: int32(i % 3), Key: []byte("k" + strconv.Itoa(i)), Value: []byte("v"),
			Headers: []kgo.RecordHeader{
				{Key: failure.HeaderOriginalTopic, Value: []byte("orders")},
				{Key: failure.HeaderOriginalPartition, Value: []byte(strconv.Itoa(i % 3))},
				{Key: failure.HeaderOriginalOffset, Value: []byte(strconv.Itoa(i / 3))},
				{Key: failure.HeaderErrorClass, Value: []byte(class)},
				{Key: failure.HeaderErrorMessage, Value: []byte("record " + strconv.Itoa(i))},
			}})
	}
	g.Expect(k.client.ProduceSync(context.Background(), rs...).FirstErr()).To(Succeed())
	return k, getPipeline(g, ns, "orders")
}

func newReplay(sp *sluicev1.StreamPipeline, name string, edit func(*sluicev1.StreamReplay)) *sluicev1.StreamReplay {
	sr := &sluicev1.StreamReplay{ObjectMeta: metav1.ObjectMeta{Namespace: sp.Namespace, Name: name},
		Spec: sluicev1.StreamReplaySpec{Pipeline: sp.Name}}
	if edit != nil {
		edit(sr)
	}
	return sr
}

func getReplay(g Gomega, ns, name string) *sluicev1.StreamReplay {
	sr := &sluicev1.StreamReplay{}
	g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, sr)).To(Succeed())
	return sr
}

func replayCondition(sr *sluicev1.StreamReplay, t string) metav1.Condition {
	for _, c := range sr.Status.Conditions {
		if c.Type == t {
			return c
		}
	}
	return metav1.Condition{}
}

func replayEventReasons(g Gomega, sr *sluicev1.StreamReplay) []string {
	list := &eventsv1.EventList{}
	g.Expect(k8s.List(context.Background(), list, client.InNamespace(sr.Namespace))).To(Succeed())
	var reasons []string
	for _, e := range list.Items {
		if e.Regarding.Kind == "StreamReplay" && e.Regarding.Name == sr.Name {
			reasons = append(reasons, e.Reason)
		}
	}
	return reasons
}

// keysOf reads topic (read_committed) for a moment and counts each key.
func keysOf(t *testing.T, k *testKafka, topic string) (map[string]int, []*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.cluster.ListenAddrs()...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := map[string]int{}
	var recs []*kgo.Record
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { got[string(r.Key)]++; recs = append(recs, r) })
		cancel()
	}
	return got, recs
}

func TestStreamReplayRedrivesTheDeadLettersOfOneClass(t *testing.T) {
	g := NewWithT(t)
	k, sp := replayFixture(t, 600)
	sr := newReplay(sp, "fix-poison", func(sr *sluicev1.StreamReplay) {
		sr.Spec.Select.ErrorClasses = []sluicev1.ReplayErrorClass{"poison"}
	})
	g.Expect(k8s.Create(context.Background(), sr)).To(Succeed())
	g.Eventually(func(g Gomega) {
		got := getReplay(g, sp.Namespace, sr.Name)
		g.Expect(got.Status.Phase).To(Equal(sluicev1.ReplayPhaseComplete), got.Status.Message)
		g.Expect(got.Status.Done).To(Equal(int64(200)))
		g.Expect(replayCondition(got, sluicev1.ConditionComplete).Status).To(Equal(metav1.ConditionTrue))
		g.Expect(replayCondition(got, sluicev1.ConditionFailed).Status).To(Equal(metav1.ConditionFalse))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())

	got := getReplay(g, sp.Namespace, sr.Name)
	g.Expect(got.Status.Target).To(Equal(sp.RetryTopics()[0]))
	g.Expect(got.Status.Snapshot).To(HaveLen(3))
	for _, p := range got.Status.Snapshot {
		g.Expect(p.End).To(Equal(int64(200)), "snapshot %+v", p)
	}
	g.Expect(got.OwnerReferences).To(ContainElement(HaveField("UID", sp.UID)), "owned by its pipeline")
	g.Expect(got.Status.StartTime).NotTo(BeNil())
	g.Expect(got.Status.CompletionTime).NotTo(BeNil())

	keys, recs := keysOf(t, k, sp.RetryTopics()[0])
	g.Expect(keys).To(HaveLen(200))
	for key, n := range keys {
		i, _ := strconv.Atoi(strings.TrimPrefix(key, "k"))
		g.Expect(i%3).To(Equal(0), "only poison pills are redriven: %s", key)
		g.Expect(n).To(Equal(1), "each once: %s", key)
	}
	h := map[string]string{}
	for _, kv := range recs[0].Headers {
		h[kv.Key] = string(kv.Value)
	}
	g.Expect(h).To(HaveKeyWithValue(failure.HeaderRedriveCount, "1"))
	g.Expect(h).To(HaveKeyWithValue(failure.HeaderRedrivenBy, sp.Namespace+"/fix-poison"))
	g.Expect(h).To(HaveKeyWithValue(failure.HeaderAttempt, "1"))
	g.Expect(h).To(HaveKeyWithValue(failure.HeaderErrorClass, "poison"))
	g.Eventually(func(g Gomega) []string { return replayEventReasons(g, got) }).WithTimeout(timeout).WithPolling(poll).
		Should(ContainElements(ReasonReplayStarted, ReasonReplayComplete))
	g.Eventually(func(g Gomega) {
		groups, err := k.adm.ListGroups(context.Background())
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(groups.Groups()).NotTo(ContainElement(got.Status.ProgressGroup), "the replay's group is deleted once Complete is recorded")
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())

	// The pipeline dead-letters some copies again: those carrying this
	// replay's name are counted, not another replay's or a new failure's.
	g.Eventually(func() *int64 { return getReplay(g, sp.Namespace, sr.Name).Status.FailedAgain }).
		WithTimeout(timeout).WithPolling(poll).Should(HaveValue(BeZero()))
	var back []*kgo.Record
	for i, by := range []string{"/fix-poison", "/fix-poison", "/fix-poison", "/other", ""} {
		r := &kgo.Record{Topic: sp.DeadLetterTopic(), Partition: int32(i % 3), Key: []byte("again" + strconv.Itoa(i))}
		if by != "" {
			r.Headers = []kgo.RecordHeader{{Key: failure.HeaderRedrivenBy, Value: []byte(sp.Namespace + by)}}
		}
		back = append(back, r)
	}
	g.Expect(k.client.ProduceSync(context.Background(), back...).FirstErr()).To(Succeed())
	g.Eventually(func() *int64 { return getReplay(g, sp.Namespace, sr.Name).Status.FailedAgain }).
		WithTimeout(timeout).WithPolling(poll).Should(HaveValue(Equal(int64(3))))
}

// TestStreamReplayThatTruncatesDeletesWhatItCopied: the pills are all of
// partition 0 (every third record); a redrive of them with truncate deletes
// partition 0 up to its end and leaves partitions 1 and 2, whose first
// records it did not take, whole.
func TestStreamReplayThatTruncatesDeletesWhatItCopied(t *testing.T) {
	g := NewWithT(t)
	k, sp := replayFixture(t, 300)
	sr := newReplay(sp, "fix-and-clean", func(sr *sluicev1.StreamReplay) {
		sr.Spec.Select.ErrorClasses = []sluicev1.ReplayErrorClass{"poison"}
		sr.Spec.Truncate = true
	})
	g.Expect(k8s.Create(context.Background(), sr)).To(Succeed())
	g.Eventually(func(g Gomega) {
		got := getReplay(g, sp.Namespace, sr.Name)
		g.Expect(got.Status.Phase).To(Equal(sluicev1.ReplayPhaseComplete), got.Status.Message)
		g.Expect(got.Status.Done).To(Equal(int64(100)))
		g.Expect(got.Status.Truncated).To(HaveValue(Equal(int64(100))))
		g.Expect(got.Status.Message).To(ContainSubstring("deleted 100 offsets of the dead-letter topic"))
		for _, p := range got.Status.Snapshot {
			want := int64(0)
			if p.Partition == 0 {
				want = 100
			}
			g.Expect(p.TruncatedTo).To(HaveValue(Equal(want)), "partition %d", p.Partition)
		}
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	starts, err := k.adm.ListStartOffsets(context.Background(), sp.DeadLetterTopic())
	g.Expect(err).NotTo(HaveOccurred())
	for p, want := range map[int32]int64{0: 100, 1: 0, 2: 0} {
		s, _ := starts.Lookup(sp.DeadLetterTopic(), p)
		g.Expect(s.Offset).To(Equal(want), "partition %d's start", p)
	}
	keys, _ := keysOf(t, k, sp.RetryTopics()[0])
	g.Expect(keys).To(HaveLen(100), "every deleted pill was copied first")
}

func TestStreamReplayDryRunCountsAndCopiesNothing(t *testing.T) {
	g := NewWithT(t)
	k, sp := replayFixture(t, 300)
	sr := newReplay(sp, "count", func(sr *sluicev1.StreamReplay) { sr.Spec.DryRun = true })
	g.Expect(k8s.Create(context.Background(), sr)).To(Succeed())
	g.Eventually(func(g Gomega) {
		got := getReplay(g, sp.Namespace, sr.Name)
		g.Expect(got.Status.Phase).To(Equal(sluicev1.ReplayPhaseComplete), got.Status.Message)
		g.Expect(got.Status.Matched).To(HaveValue(Equal(int64(300))))
		g.Expect(got.Status.MatchedByClass).To(Equal(map[string]int64{"poison": 100, "transient": 200}))
		for _, p := range got.Status.Snapshot {
			g.Expect(p.Matched).To(HaveValue(Equal(int64(100))), "partition %d", p.Partition)
		}
		g.Expect(got.Status.Done).To(BeZero())
		g.Expect(replayCondition(got, sluicev1.ConditionComplete).Reason).To(Equal(ReasonDryRunComplete))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	keys, _ := keysOf(t, k, sp.RetryTopics()[0])
	g.Expect(keys).To(BeEmpty(), "a dry run copies nothing")
}

func TestStreamReplayWithALimitRedrivesThatMany(t *testing.T) {
	g := NewWithT(t)
	k, sp := replayFixture(t, 300)
	sr := newReplay(sp, "some", func(sr *sluicev1.StreamReplay) {
		sr.Spec.Select.Limit = new(int64(150))
		sr.Spec.Target = sluicev1.ReplayTargetSource
	})
	g.Expect(k8s.Create(context.Background(), sr)).To(Succeed())
	g.Eventually(func(g Gomega) {
		got := getReplay(g, sp.Namespace, sr.Name)
		g.Expect(got.Status.Phase).To(Equal(sluicev1.ReplayPhaseComplete), got.Status.Message)
		g.Expect(got.Status.Matched).To(HaveValue(Equal(int64(150))))
		g.Expect(got.Status.Done).To(Equal(int64(150)))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	keys, _ := keysOf(t, k, "orders")
	g.Expect(keys).To(HaveLen(150), "partition 0's 100 dead letters and the first 50 of partition 1, into the source topic")
}

func TestStreamReplayThatCantRunFailsNamingTheField(t *testing.T) {
	g := NewWithT(t)
	_, sp := replayFixture(t, 3)
	sr := newReplay(sp, "p9", func(sr *sluicev1.StreamReplay) {
		sr.Spec.Select.Partitions = []sluicev1.ReplayPartitionRange{{Partition: 9}}
	})
	g.Expect(k8s.Create(context.Background(), sr)).To(Succeed())
	g.Eventually(func(g Gomega) {
		got := getReplay(g, sp.Namespace, sr.Name)
		g.Expect(got.Status.Phase).To(Equal(sluicev1.ReplayPhaseFailed))
		c := replayCondition(got, sluicev1.ConditionFailed)
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(c.Reason).To(Equal(ReasonInvalidSelection))
		g.Expect(c.Message).To(ContainSubstring("spec.select.partitions: partition 9 does not exist"))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())

	missing := newReplay(sp, "nopipe", func(sr *sluicev1.StreamReplay) { sr.Spec.Pipeline = "absent" })
	g.Expect(k8s.Create(context.Background(), missing)).To(Succeed())
	g.Eventually(func(g Gomega) {
		got := getReplay(g, sp.Namespace, missing.Name)
		g.Expect(got.Status.Phase).To(Equal(sluicev1.ReplayPhasePending))
		g.Expect(got.Status.Message).To(ContainSubstring("absent not found (spec.pipeline)"))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
}
