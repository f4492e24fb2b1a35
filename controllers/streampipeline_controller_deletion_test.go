package controllers

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// deletingPipeline creates a pipeline with deletionPolicy Delete on k and
// waits until its topics exist and its finalizer is set.
func deletingPipeline(t *testing.T, brokers []string, ns, name string, edit func(*sluicev1.StreamPipeline)) *sluicev1.StreamPipeline {
	t.Helper()
	sp := logPipeline(ns, name)
	sp.Spec.Kafka.BootstrapServers = brokers
	sp.Spec.Topics.DeletionPolicy = sluicev1.DeletionPolicyDelete
	if edit != nil {
		edit(sp)
	}
	create(t, sp)
	NewWithT(t).Eventually(func(g Gomega) {
		p := getPipeline(g, ns, name)
		g.Expect(p.Finalizers).To(ContainElement(sluicev1.FinalizerTopics))
		g.Expect(condition(p, sluicev1.ConditionTopicsReady).Status).To(Equal(metav1.ConditionTrue))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	return sp
}

func waitGone(t *testing.T, sp *sluicev1.StreamPipeline, within time.Duration) {
	t.Helper()
	NewWithT(t).Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(context.Background(), client.ObjectKeyFromObject(sp), &sluicev1.StreamPipeline{}))
	}).WithTimeout(within).WithPolling(poll).Should(BeTrue(), "pipeline %s/%s is gone", sp.Namespace, sp.Name)
}

// TestDeletionFinishesWhenTheCredentialsSecretIsGone: deleting a namespace
// deletes its Secrets first; the pipeline's Kafka credentials are gone when
// its finalizer runs. Deletion must finish anyway, with a Warning that names
// the topics left behind (it used to retry for ever and keep the namespace
// Terminating).
func TestDeletionFinishesWhenTheCredentialsSecretIsGone(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	secured, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"),
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "orders-app", "s3cr3t-pa55"))
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(secured.Close)
	ns := newNamespace(t)
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "kafka-user", Namespace: ns},
		Data:       map[string][]byte{"username": []byte("orders-app"), "password": []byte("s3cr3t-pa55")},
	}
	g.Expect(k8s.Create(ctx, secret)).To(Succeed())
	sp := deletingPipeline(t, secured.ListenAddrs(), ns, "secured", func(sp *sluicev1.StreamPipeline) {
		sp.Spec.Topics.ReplicationFactor = new(int32(1))
		sp.Spec.Topics.MinInSyncReplicas = new(int32(1))
		sp.Spec.Kafka.SASL = &sluicev1.KafkaSASLSpec{Mechanism: sluicev1.SASLScramSHA512, SecretRef: sluicev1.SecretRef{Name: "kafka-user"}}
	})

	g.Expect(k8s.Delete(ctx, secret)).To(Succeed())
	g.Expect(k8s.Delete(ctx, sp)).To(Succeed())
	waitGone(t, sp, timeout)
	g.Eventually(func(g Gomega) string { return strings.Join(eventNotes(g, sp, sluicev1.EventTopicsLeftBehind), "\n") }).
		WithTimeout(timeout).WithPolling(poll).Should(And(
		ContainSubstring(sp.DeadLetterTopic()), ContainSubstring(sp.RetryTopics()[0]), ContainSubstring("kafka-user")))
}

// TestDeletionFinishesWhenKafkaStaysUnreachable: Kafka is gone for good; after
// the deletion timeout the pipeline lets go and says which topics remain.
// Until then the status says why it waits.
func TestDeletionFinishesWhenKafkaStaysUnreachable(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	k := newKafka(t, 1)
	ns := newNamespace(t)
	sp := deletingPipeline(t, k.cluster.ListenAddrs(), ns, "orphan", nil)

	k.cluster.Close()
	start := time.Now()
	g.Expect(k8s.Delete(ctx, sp)).To(Succeed())
	g.Eventually(func(g Gomega) {
		ready := condition(getPipeline(g, ns, "orphan"), sluicev1.ConditionReady)
		g.Expect(ready.Reason).To(Equal(sluicev1.ReasonDeleting))
		g.Expect(ready.Message).To(ContainSubstring("retrying until"))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	waitGone(t, sp, reconciler.TopicDeletionTimeout+timeout)
	// The deadline counts from the deletionTimestamp, which the API server
	// keeps at whole seconds: it may be up to 1 s before start.
	g.Expect(time.Since(start.Truncate(time.Second))).To(BeNumerically(">=", reconciler.TopicDeletionTimeout), "it waited for Kafka first")
	g.Eventually(func(g Gomega) []string { return eventNotes(g, sp, sluicev1.EventTopicsLeftBehind) }).
		WithTimeout(timeout).WithPolling(poll).Should(ContainElement(ContainSubstring(sp.DeadLetterTopic())))
}

// refuseTopicDeletion makes k answer every DeleteTopics with code for each
// topic, until the returned function is called.
func refuseTopicDeletion(k *testKafka, code int16) (stop func()) {
	var stopped atomic.Bool
	k.cluster.ControlKey(int16(kmsg.DeleteTopics), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if stopped.Load() {
			return nil, nil, false
		}
		k.cluster.KeepControl()
		r := req.(*kmsg.DeleteTopicsRequest)
		resp := r.ResponseKind().(*kmsg.DeleteTopicsResponse)
		for _, t := range r.TopicNames {
			rt := kmsg.NewDeleteTopicsResponseTopic()
			rt.Topic = kmsg.StringPtr(t)
			rt.ErrorCode = code
			resp.Topics = append(resp.Topics, rt)
		}
		for _, t := range r.Topics {
			rt := kmsg.NewDeleteTopicsResponseTopic()
			rt.Topic = t.Topic
			rt.ErrorCode = code
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil, true
	})
	return func() { stopped.Store(true) }
}

// TestRetainSetDuringDeletionLetsThePipelineGoAndKeepsTheTopics: a deletion
// waiting for Kafka (which times out every topic deletion) is ended at once
// by switching the policy back to Retain; the topics stay.
func TestRetainSetDuringDeletionLetsThePipelineGoAndKeepsTheTopics(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	k := newKafka(t, 1)
	ns := newNamespace(t)
	sp := deletingPipeline(t, k.cluster.ListenAddrs(), ns, "changed-mind", nil)
	defer refuseTopicDeletion(k, kerr.RequestTimedOut.Code)()

	g.Expect(k8s.Delete(ctx, sp)).To(Succeed())
	g.Eventually(func(g Gomega) string {
		return condition(getPipeline(g, ns, "changed-mind"), sluicev1.ConditionReady).Message
	}).WithTimeout(timeout).WithPolling(poll).Should(ContainSubstring("retrying until"))
	updatePipeline(t, ns, "changed-mind", func(sp *sluicev1.StreamPipeline) {
		sp.Spec.Topics.DeletionPolicy = sluicev1.DeletionPolicyRetain
	})
	waitGone(t, sp, timeout)
	for _, topic := range provisionedTopics(sp) {
		g.Expect(k.topicExists(t, topic)).To(BeTrue(), "Retain keeps %s", topic)
	}
}

// TestDeletionFinishesWhenKafkaDeniesIt: an authorization failure won't go
// away by waiting; the pipeline lets go at once and says so.
func TestDeletionFinishesWhenKafkaDeniesIt(t *testing.T) {
	g := NewWithT(t)
	k := newKafka(t, 1)
	ns := newNamespace(t)
	sp := deletingPipeline(t, k.cluster.ListenAddrs(), ns, "denied", nil)
	defer refuseTopicDeletion(k, kerr.TopicAuthorizationFailed.Code)()

	g.Expect(k8s.Delete(context.Background(), sp)).To(Succeed())
	waitGone(t, sp, timeout)
	g.Eventually(func(g Gomega) []string { return eventNotes(g, sp, sluicev1.EventTopicsLeftBehind) }).
		WithTimeout(timeout).WithPolling(poll).Should(ContainElement(ContainSubstring("denied")))
}

// TestSecondPipelineOnTheSameTopicsStallsAndDeletionKeepsSharedTopics: a
// pipeline that names the retry and dead-letter topics of an earlier pipeline
// on the same cluster is refused (it would re-process the other's failures);
// deleting the earlier pipeline with deletionPolicy Delete keeps the topics
// the later one uses, and the later one then goes ahead.
func TestSecondPipelineOnTheSameTopicsStallsAndDeletionKeepsSharedTopics(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	k := newKafka(t, 1)
	first := deletingPipeline(t, k.cluster.ListenAddrs(), newNamespace(t), "first", nil)

	ns := newNamespace(t)
	second := logPipeline(ns, "second")
	second.Spec.Kafka.BootstrapServers = k.cluster.ListenAddrs()
	second.Spec.Delivery.DeadLetterTopic = first.DeadLetterTopic()
	create(t, second)
	g.Eventually(func(g Gomega) {
		st := condition(getPipeline(g, ns, "second"), sluicev1.ConditionStalled)
		g.Expect(st.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(st.Reason).To(Equal(sluicev1.ReasonClaimConflict))
		g.Expect(st.Message).To(And(ContainSubstring("spec.delivery.deadLetterTopic"), ContainSubstring(first.DeadLetterTopic()),
			ContainSubstring(first.Namespace+"/first")))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())

	g.Expect(k8s.Delete(ctx, first)).To(Succeed())
	waitGone(t, first, timeout)
	g.Expect(k.topicExists(t, first.DeadLetterTopic())).To(BeTrue(), "the topic the second pipeline uses is kept")
	g.Expect(k.topicExists(t, first.RetryTopics()[0])).To(BeFalse(), "the first pipeline's own topics are deleted")
	g.Eventually(func(g Gomega) []string { return eventNotes(g, first, sluicev1.EventTopicsKept) }).
		WithTimeout(timeout).WithPolling(poll).Should(ContainElement(ContainSubstring(ns + "/second")))
	g.Eventually(func(g Gomega) metav1.ConditionStatus {
		return condition(getPipeline(g, ns, "second"), sluicev1.ConditionTopicsReady).Status
	}).WithTimeout(timeout).WithPolling(poll).Should(Equal(metav1.ConditionTrue))
}

// TestTwoPipelinesOnOneTopicGetTopicsOfTheirOwn: the default retry and
// dead-letter topics derive from the consumer group, so two pipelines reading
// the same source topic never share them.
func TestTwoPipelinesOnOneTopicGetTopicsOfTheirOwn(t *testing.T) {
	g := NewWithT(t)
	k := newKafka(t, 1)
	ns := newNamespace(t)
	a, b := logPipeline(ns, "audit"), logPipeline(ns, "billing")
	for _, sp := range []*sluicev1.StreamPipeline{a, b} {
		sp.Spec.Kafka.BootstrapServers = k.cluster.ListenAddrs()
		create(t, sp)
	}
	for _, sp := range []*sluicev1.StreamPipeline{a, b} {
		g.Eventually(func(g Gomega) metav1.ConditionStatus {
			return condition(getPipeline(g, ns, sp.Name), sluicev1.ConditionTopicsReady).Status
		}).WithTimeout(timeout).WithPolling(poll).Should(Equal(metav1.ConditionTrue))
	}
	g.Expect(a.DeadLetterTopic()).To(Equal(ns + ".audit.dlq"))
	g.Expect(b.RetryTopics()[0]).To(Equal(ns + ".billing.retry.1"))
	for _, topic := range append(provisionedTopics(a), provisionedTopics(b)...) {
		g.Expect(k.topicExists(t, topic)).To(BeTrue(), topic)
	}
}
