package controllers

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/scaling"
)

// scalingPipeline samples every 200 ms with a target of 100 records per
// replica; stabilization is the scale-down window.
func scalingPipeline(t *testing.T, k *testKafka, name string, minReplicas int32, stabilization time.Duration) *sluicev1.StreamPipeline {
	t.Helper()
	sp := logPipeline(newNamespace(t), name)
	sp.Spec.Kafka.BootstrapServers = k.cluster.ListenAddrs()
	sp.Spec.Scaling = sluicev1.ScalingSpec{
		MinReplicas:            new(minReplicas),
		MaxReplicas:            new(int32(10)),
		LagThreshold:           new(int64(100)),
		MaxScaleUpStep:         new(int32(10)),
		PollInterval:           &metav1.Duration{Duration: 200 * time.Millisecond},
		ScaleDownStabilization: &metav1.Duration{Duration: stabilization},
	}
	create(t, sp)
	return sp
}

func deploymentReplicas(g Gomega, sp *sluicev1.StreamPipeline) int32 {
	return ptr.Deref(getDeployment(g, sp).Spec.Replicas, -1)
}

func TestBacklogScalesUpCappedAtPartitionsAndDownOnlyAfterStabilization(t *testing.T) {
	g := NewWithT(t)
	k := newKafka(t, 4)
	sp := scalingPipeline(t, k, "busy", 1, 3*time.Second)
	g.Eventually(func(g Gomega) int32 { return deploymentReplicas(g, sp) }).WithTimeout(timeout).WithPolling(poll).Should(Equal(int32(1)))

	// 1,000 records of lag want 10 replicas; the topic has 4 partitions, so 4.
	k.produce(t, "orders", []int32{0, 1, 2, 3}, 250, time.Now())
	g.Eventually(func(g Gomega) {
		p := getPipeline(g, sp.Namespace, sp.Name)
		g.Expect(deploymentReplicas(g, sp)).To(Equal(int32(4)))
		g.Expect(p.Status.DesiredReplicas).To(Equal(int32(4)))
		g.Expect(p.Status.Lag.Total).To(Equal(int64(1000)))
		g.Expect(p.Status.LastScale).NotTo(BeNil())
		g.Expect(p.Status.LastScale.From).To(Equal(int32(1)))
		g.Expect(p.Status.LastScale.To).To(Equal(int32(4)))
		g.Expect(p.Status.LastScale.Reason).To(Equal(scaling.ReasonLagAboveTarget))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	g.Eventually(func(g Gomega) string { return strings.Join(eventNotes(g, sp, sluicev1.EventScaled), "\n") }).
		WithTimeout(timeout).WithPolling(poll).Should(ContainSubstring("from 1 to 4 (LagAboveTarget)"))

	// The workers catch up: replicas hold for the stabilization window, then
	// drop to the minimum in one step.
	k.commitToEnd(t, sp.ConsumerGroup(), "orders")
	g.Eventually(func(g Gomega) int64 { return getPipeline(g, sp.Namespace, sp.Name).Status.Lag.Total }).
		WithTimeout(timeout).WithPolling(poll).Should(BeZero())
	g.Consistently(func(g Gomega) int32 { return deploymentReplicas(g, sp) }).
		WithTimeout(2 * time.Second).WithPolling(poll).Should(Equal(int32(4)))
	g.Eventually(func(g Gomega) {
		p := getPipeline(g, sp.Namespace, sp.Name)
		g.Expect(deploymentReplicas(g, sp)).To(Equal(int32(1)))
		g.Expect(p.Status.LastScale).To(HaveField("Reason", scaling.ReasonLagBelowTarget))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
}

func TestIdlePipelineScalesToZeroAndBackWhenRecordsArrive(t *testing.T) {
	g := NewWithT(t)
	k := newKafka(t, 2)
	sp := scalingPipeline(t, k, "idle", 0, time.Second)
	g.Eventually(func(g Gomega) {
		g.Expect(deploymentReplicas(g, sp)).To(BeZero())
		g.Expect(getPipeline(g, sp.Namespace, sp.Name).Status.LastScale).To(HaveField("Reason", scaling.ReasonScaledToZero))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())

	k.produce(t, "orders", []int32{0}, 10, time.Now())
	g.Eventually(func(g Gomega) {
		g.Expect(deploymentReplicas(g, sp)).To(Equal(int32(1)))
		g.Expect(getPipeline(g, sp.Namespace, sp.Name).Status.LastScale).To(HaveField("Reason", scaling.ReasonLagAppeared))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
}

// TestLagReadFailureHoldsTheReplicaCount: a failing lag read is no reason to
// scale either way; the count holds and the conditions say the lag is unknown.
func TestLagReadFailureHoldsTheReplicaCount(t *testing.T) {
	g := NewWithT(t)
	k := newKafka(t, 4)
	sp := scalingPipeline(t, k, "blind", 1, time.Second)
	k.produce(t, "orders", []int32{0, 1, 2, 3}, 100, time.Now())
	g.Eventually(func(g Gomega) int32 { return deploymentReplicas(g, sp) }).WithTimeout(timeout).WithPolling(poll).Should(Equal(int32(4)))

	ends, err := k.adm.ListEndOffsets(context.Background(), "orders")
	g.Expect(err).NotTo(HaveOccurred())
	var failing atomic.Bool
	failing.Store(true)
	k.cluster.ControlKey(int16(kmsg.ListOffsets), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if !failing.Load() {
			k.cluster.DropControl()
			return nil, nil, false
		}
		k.cluster.KeepControl()
		r := req.(*kmsg.ListOffsetsRequest)
		resp := r.ResponseKind().(*kmsg.ListOffsetsResponse)
		for _, rt := range r.Topics {
			st := kmsg.NewListOffsetsResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewListOffsetsResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.UnknownServerError.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	// The backlog is consumed while nobody can see it.
	g.Expect(k.adm.CommitAllOffsets(context.Background(), sp.ConsumerGroup(), ends.Offsets())).To(Succeed())
	g.Eventually(func(g Gomega) {
		c := condition(getPipeline(g, sp.Namespace, sp.Name), sluicev1.ConditionLagCritical)
		g.Expect(c.Status).To(Equal(metav1.ConditionUnknown))
		g.Expect(c.Message).To(ContainSubstring("UNKNOWN_SERVER_ERROR"))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	g.Consistently(func(g Gomega) int32 { return deploymentReplicas(g, sp) }).
		WithTimeout(3 * time.Second).WithPolling(poll).Should(Equal(int32(4)))

	// Readable again: the lag is 0 and, after the window, the count falls.
	failing.Store(false)
	g.Eventually(func(g Gomega) int32 { return deploymentReplicas(g, sp) }).WithTimeout(timeout).WithPolling(poll).Should(Equal(int32(1)))
}

func TestConditionsNameCriticalLagDeadLettersAndStalls(t *testing.T) {
	g := NewWithT(t)
	k := newKafka(t, 2)
	sp := scalingPipeline(t, k, "troubled", 1, time.Minute)
	updatePipeline(t, sp.Namespace, sp.Name, func(sp *sluicev1.StreamPipeline) { sp.Spec.Scaling.LagCriticalSeconds = new(int32(60)) })
	get := func(g Gomega) *sluicev1.StreamPipeline { return getPipeline(g, sp.Namespace, sp.Name) }

	g.Eventually(func(g Gomega) {
		p := get(g)
		g.Expect(condition(p, sluicev1.ConditionLagCritical).Reason).To(Equal(sluicev1.ReasonLagWithinBudget))
		g.Expect(condition(p, sluicev1.ConditionDeadLettersPresent).Reason).To(Equal(sluicev1.ReasonNoDeadLetters))
		g.Expect(condition(p, sluicev1.ConditionConsumerStalled).Reason).To(Equal(sluicev1.ReasonConsuming))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())

	// Records an hour old that nobody consumes: critical by time lag, and after
	// a full health window with no group members, stopped.
	k.produce(t, "orders", []int32{0, 1}, 5, time.Now().Add(-time.Hour))
	g.Eventually(func(g Gomega) {
		p := get(g)
		c := condition(p, sluicev1.ConditionLagCritical)
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(c.Message).To(MatchRegexp(`the oldest unconsumed record is 36\d\d s old, over the 60 s budget`))
		g.Expect(p.Status.Lag.Seconds).To(HaveValue(BeNumerically(">=", 3600)))
		g.Expect(p.Status.Lag.PartitionsWithLag).To(Equal(int32(2)))
		st := condition(p, sluicev1.ConditionConsumerStalled)
		g.Expect(st.Reason).To(Equal(sluicev1.ReasonGroupStopped))
		g.Expect(st.Message).To(ContainSubstring("no members and a lag of 10 records"))
		// Per partition, as a metric: both lagging partitions an hour behind.
		for _, part := range []string{"0", "1"} {
			secs, ok := partitionGauge(g, metricPartitionLagS, sp, part)
			g.Expect(ok).To(BeTrue(), "%s{partition=%q}", metricPartitionLagS, part)
			g.Expect(secs).To(BeNumerically(">=", 3600), "partition %s", part)
		}
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())

	// Dead letters: present, and growing while they arrive.
	k.produce(t, sp.DeadLetterTopic(), []int32{0}, 3, time.Now())
	g.Eventually(func(g Gomega) {
		p := get(g)
		g.Expect(p.Status.DeadLetter.Records).To(HaveValue(Equal(int64(3))))
		c := condition(p, sluicev1.ConditionDeadLettersPresent)
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(c.Reason).To(Equal(sluicev1.ReasonDeadLettersGrowing))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())

	// A member that holds the partitions and never commits: stalled, by name.
	consumer, err := kgo.NewClient(kgo.SeedBrokers(k.cluster.ListenAddrs()...), kgo.ConsumerGroup(sp.ConsumerGroup()),
		kgo.ConsumeTopics("orders"), kgo.DisableAutoCommit())
	g.Expect(err).NotTo(HaveOccurred())
	defer consumer.Close()
	go func() {
		for !consumer.PollFetches(context.Background()).IsClientClosed() {
		}
	}()
	g.Eventually(func(g Gomega) {
		c := condition(get(g), sluicev1.ConditionConsumerStalled)
		g.Expect(c.Reason).To(Equal(sluicev1.ReasonPartitionsStalled))
		g.Expect(c.Message).To(ContainSubstring("partitions 0, 1 have lag and their committed offsets have not moved"))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())

	// Caught up: everything clears (dead letters stay until someone acts). The
	// stuck member leaves first: a group with members only takes commits from them.
	consumer.Close()
	k.commitToEnd(t, sp.ConsumerGroup(), "orders")
	g.Eventually(func(g Gomega) {
		p := get(g)
		g.Expect(condition(p, sluicev1.ConditionLagCritical).Status).To(Equal(metav1.ConditionFalse))
		g.Expect(condition(p, sluicev1.ConditionConsumerStalled).Status).To(Equal(metav1.ConditionFalse))
		g.Expect(condition(p, sluicev1.ConditionDeadLettersPresent).Reason).To(Equal(sluicev1.ReasonDeadLetters))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())

	// The same figures as operator metrics.
	families, err := registry.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	found := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["namespace"] == sp.Namespace && labels["pipeline"] == sp.Name && labels["partition"] == "" &&
				(labels["type"] == "" || labels["status"] == "True" && labels["type"] == sluicev1.ConditionDeadLettersPresent) {
				found[f.GetName()] = m.GetGauge().GetValue()
			}
		}
	}
	g.Expect(found).To(HaveKeyWithValue(metricDeadLetters, 3.0))
	g.Expect(found).To(HaveKeyWithValue(metricLag, 0.0))
	g.Expect(found).To(HaveKeyWithValue(metricCondition, 1.0))
}

// TestLatestPipelineNeverCommittedWakesForEveryNewRecord: a startFrom: Latest
// pipeline whose group has never committed, on a topic that already holds
// records, scales to zero (nothing new arrived) and must wake for the records
// that arrive afterwards. Before the operator committed the group's start, its
// lag read 0 for ever: Latest with no commit means "the end, whenever a member
// joins", so the pipeline stayed at zero while records piled up.
func TestLatestPipelineNeverCommittedWakesForEveryNewRecord(t *testing.T) {
	g := NewWithT(t)
	k := newKafka(t, 2)
	k.produce(t, "orders", []int32{0, 1}, 30, time.Now()) // before the pipeline: not its business
	sp := logPipeline(newNamespace(t), "latest")
	sp.Spec.Kafka.BootstrapServers = k.cluster.ListenAddrs()
	sp.Spec.Source.StartFrom = sluicev1.StartFromLatest
	sp.Spec.Scaling = sluicev1.ScalingSpec{
		MinReplicas:            new(int32(0)),
		LagThreshold:           new(int64(100)),
		PollInterval:           &metav1.Duration{Duration: 200 * time.Millisecond},
		ScaleDownStabilization: &metav1.Duration{Duration: time.Second},
	}
	create(t, sp)

	g.Eventually(func(g Gomega) {
		p := getPipeline(g, sp.Namespace, sp.Name)
		g.Expect(p.Status.StartingOffsetsCommitted).NotTo(BeNil())
		g.Expect(deploymentReplicas(g, sp)).To(BeZero())
		g.Expect(p.Status.Lag).NotTo(BeNil())
		g.Expect(p.Status.Lag.Total).To(BeZero())
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	committed, err := k.adm.FetchOffsets(context.Background(), sp.ConsumerGroup())
	g.Expect(err).NotTo(HaveOccurred())
	for p := range int32(2) {
		o, ok := committed.Lookup("orders", p)
		g.Expect(ok).To(BeTrue(), "partition %d has a committed start", p)
		g.Expect(o.At).To(Equal(int64(30)), "partition %d starts at the end it had when the pipeline was created", p)
	}
	g.Expect(eventReasons(g, sp)).To(ContainElement(sluicev1.EventStartingOffsetsCommitted))

	k.produce(t, "orders", []int32{1}, 5, time.Now())
	g.Eventually(func(g Gomega) {
		p := getPipeline(g, sp.Namespace, sp.Name)
		g.Expect(deploymentReplicas(g, sp)).To(Equal(int32(1)))
		g.Expect(p.Status.LastScale).To(HaveField("Reason", scaling.ReasonLagAppeared))
		g.Expect(p.Status.Lag.Total).To(Equal(int64(5)))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())

	// The workers read a partition without a committed offset (one added
	// later) from its beginning: everything in it arrived after the start.
	cm := workerConfigOf(g, sp)
	g.Expect(cm.Source.StartFrom).To(Equal(string(sluicev1.StartFromEarliest)))
}

// partitionGauge reads a per-partition gauge of the pipeline from the
// operator's registry.
func partitionGauge(g Gomega, name string, sp *sluicev1.StreamPipeline, partition string) (float64, bool) {
	families, err := registry.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["namespace"] == sp.Namespace && labels["pipeline"] == sp.Name && labels["partition"] == partition {
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}
