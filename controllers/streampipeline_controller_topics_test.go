package controllers

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

func TestTopicsAreProvisionedWithThePolicyAndDriftConverges(t *testing.T) {
	g := NewWithT(t)
	k := newKafka(t, 4)
	ns := newNamespace(t)
	sp := logPipeline(ns, "orders")
	sp.Spec.Kafka.BootstrapServers = k.cluster.ListenAddrs()
	sp.Spec.Topics.Retention = &metav1.Duration{Duration: time.Hour}
	sp.Spec.Topics.MinInSyncReplicas = new(int32(2))
	create(t, sp)

	topics := provisionedTopics(sp)
	g.Expect(topics).To(Equal([]string{ns + ".orders.retry.1", ns + ".orders.retry.2", ns + ".orders.retry.3", ns + ".orders.dlq"}))
	g.Eventually(func(g Gomega) {
		p := getPipeline(g, ns, "orders")
		c := condition(p, sluicev1.ConditionTopicsReady)
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(c.Reason).To(Equal(sluicev1.ReasonTopicsProvisioned))
		g.Expect(p.Status.Partitions).To(HaveValue(Equal(int32(4))))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	for _, topic := range topics {
		g.Expect(k.topicExists(t, topic)).To(BeTrue(), topic)
		g.Expect(k.partitions(t, topic)).To(Equal(4), "partitions default to the source's: %s", topic)
		g.Expect(k.topicConfig(t, topic, "retention.ms")).To(Equal("3600000"), topic)
		g.Expect(k.topicConfig(t, topic, "min.insync.replicas")).To(Equal("2"), topic)
		g.Expect(k.topicConfig(t, topic, "cleanup.policy")).To(Equal("delete"), topic)
	}
	g.Eventually(func(g Gomega) []string { return eventReasons(g, sp) }).
		WithTimeout(timeout).WithPolling(poll).Should(ContainElement(sluicev1.EventWorkloadCreated))

	// Someone changes a config by hand: the periodic reconcile sets it back.
	_, err := k.adm.AlterTopicConfigs(context.Background(),
		[]kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: kadm.StringPtr("1000")}}, sp.DeadLetterTopic())
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(func() string { return k.topicConfig(t, sp.DeadLetterTopic(), "retention.ms") }).
		WithTimeout(timeout).WithPolling(poll).Should(Equal("3600000"))

	// The source grows: the provisioned topics follow. Asking for fewer
	// partitions later never removes any, and the condition says so.
	_, err = k.adm.UpdatePartitions(context.Background(), 6, "orders")
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(func() int { return k.partitions(t, sp.DeadLetterTopic()) }).
		WithTimeout(timeout).WithPolling(poll).Should(Equal(6))
	updatePipeline(t, ns, "orders", func(sp *sluicev1.StreamPipeline) { sp.Spec.Topics.Partitions = new(int32(2)) })
	g.Eventually(func(g Gomega) {
		c := condition(getPipeline(g, ns, "orders"), sluicev1.ConditionTopicsReady)
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(c.Reason).To(Equal(sluicev1.ReasonPartitionsNotDecreased))
		g.Expect(c.Message).To(ContainSubstring("orders.dlq has 6 partitions, the policy asks for 2"))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	g.Expect(k.partitions(t, sp.DeadLetterTopic())).To(Equal(6))
}

func TestMissingSourceTopicStallsUntilItIsCreated(t *testing.T) {
	g := NewWithT(t)
	k := newKafka(t, 1)
	ns := newNamespace(t)
	sp := logPipeline(ns, "late")
	sp.Spec.Kafka.BootstrapServers = k.cluster.ListenAddrs()
	sp.Spec.Source.Topic = "payments"
	create(t, sp)

	g.Eventually(func(g Gomega) {
		p := getPipeline(g, ns, "late")
		c := condition(p, sluicev1.ConditionTopicsReady)
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(sluicev1.ReasonSourceTopicNotFound))
		g.Expect(c.Message).To(ContainSubstring(`source topic "payments" does not exist`))
		g.Expect(condition(p, sluicev1.ConditionStalled).Status).To(Equal(metav1.ConditionTrue))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	// No workers for a topic that isn't there.
	g.Expect(apierrors.IsNotFound(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "late-worker"}, &appsv1.Deployment{}))).To(BeTrue())

	_, err := k.adm.CreateTopic(context.Background(), 2, 3, nil, "payments")
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(func(g Gomega) {
		p := getPipeline(g, ns, "late")
		g.Expect(condition(p, sluicev1.ConditionTopicsReady).Status).To(Equal(metav1.ConditionTrue))
		g.Expect(condition(p, sluicev1.ConditionStalled).Status).To(Equal(metav1.ConditionFalse))
		getDeployment(g, p)
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	g.Expect(k.topicExists(t, ns+".late.dlq")).To(BeTrue())
}

func TestReplicationFactorAboveTheBrokerCountStalls(t *testing.T) {
	g := NewWithT(t)
	k := newKafka(t, 1)
	ns := newNamespace(t)
	sp := logPipeline(ns, "wide")
	sp.Spec.Kafka.BootstrapServers = k.cluster.ListenAddrs()
	sp.Spec.Topics.ReplicationFactor = new(int32(5))
	create(t, sp)
	g.Eventually(func(g Gomega) {
		p := getPipeline(g, ns, "wide")
		c := condition(p, sluicev1.ConditionTopicsReady)
		g.Expect(c.Reason).To(Equal(sluicev1.ReasonInvalidReplicationFactor))
		g.Expect(c.Message).To(Equal("spec.topics.replicationFactor 5 is larger than the cluster's 3 brokers"))
		g.Expect(condition(p, sluicev1.ConditionStalled).Status).To(Equal(metav1.ConditionTrue))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
}

// TestUnreachableBrokersAreRetriedAndRecoveryClearsTheCondition: brokers that
// don't answer are not a stall (they come back); the pipeline says so and
// notices on its own when they do.
func TestUnreachableBrokersAreRetriedAndRecoveryClearsTheCondition(t *testing.T) {
	g := NewWithT(t)
	port := freePort(t)
	ns := newNamespace(t)
	sp := logPipeline(ns, "offline")
	sp.Spec.Kafka.BootstrapServers = []string{"127.0.0.1:" + strconv.Itoa(port)}
	create(t, sp)
	g.Eventually(func(g Gomega) {
		p := getPipeline(g, ns, "offline")
		c := condition(p, sluicev1.ConditionTopicsReady)
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(sluicev1.ReasonKafkaUnreachable))
		g.Expect(condition(p, sluicev1.ConditionReady).Reason).To(Equal(sluicev1.ReasonKafkaUnreachable))
		g.Expect(condition(p, sluicev1.ConditionReconciling).Status).To(Equal(metav1.ConditionTrue))
		g.Expect(condition(p, sluicev1.ConditionStalled).Status).To(Equal(metav1.ConditionFalse))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())

	c, err := kfake.NewCluster(kfake.Ports(port), kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"))
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(c.Close)
	updatePipeline(t, ns, "offline", func(sp *sluicev1.StreamPipeline) {
		sp.Spec.Topics.ReplicationFactor = new(int32(1))
		sp.Spec.Topics.MinInSyncReplicas = new(int32(1))
	})
	g.Eventually(func(g Gomega) {
		p := getPipeline(g, ns, "offline")
		g.Expect(condition(p, sluicev1.ConditionTopicsReady).Status).To(Equal(metav1.ConditionTrue))
		g.Expect(p.Status.Lag).NotTo(BeNil())
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
}

func TestDeletionPolicyDeleteRemovesTheProvisionedTopics(t *testing.T) {
	g := NewWithT(t)
	k := newKafka(t, 1)
	ns := newNamespace(t)
	kept := logPipeline(ns, "kept")
	kept.Spec.Kafka.BootstrapServers = k.cluster.ListenAddrs()
	kept.Spec.Delivery.DeadLetterTopic = "kept.dlq"
	kept.Spec.Delivery.Retry.TopicPrefix = "kept.retry"
	gone := logPipeline(ns, "gone")
	gone.Spec.Kafka.BootstrapServers = k.cluster.ListenAddrs()
	gone.Spec.Delivery.DeadLetterTopic = "gone.dlq"
	gone.Spec.Delivery.Retry.TopicPrefix = "gone.retry"
	gone.Spec.Topics.DeletionPolicy = sluicev1.DeletionPolicyDelete
	create(t, kept)
	create(t, gone)
	for _, topic := range []string{"kept.dlq", "gone.dlq", "gone.retry.1"} {
		g.Eventually(func() bool { return k.topicExists(t, topic) }).WithTimeout(timeout).WithPolling(poll).Should(BeTrue(), topic)
	}
	g.Eventually(func(g Gomega) []string { return getPipeline(g, ns, "gone").Finalizers }).
		WithTimeout(timeout).WithPolling(poll).Should(ContainElement(sluicev1.FinalizerTopics))
	// A redrive parked records beside the DLQ (not beside the retry topics).
	_, err := k.adm.CreateTopic(context.Background(), 1, 1, nil, "gone.dlq.parked")
	g.Expect(err).NotTo(HaveOccurred())
	goneEvents := getPipeline(g, ns, "gone")

	g.Expect(k8s.Delete(context.Background(), kept)).To(Succeed())
	g.Expect(k8s.Delete(context.Background(), gone)).To(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(context.Background(), client.ObjectKeyFromObject(gone), &sluicev1.StreamPipeline{}))
	}).WithTimeout(timeout).WithPolling(poll).Should(BeTrue())
	for _, topic := range []string{"gone.dlq", "gone.retry.1", "gone.retry.2", "gone.retry.3", "gone.dlq.parked"} {
		g.Expect(k.topicExists(t, topic)).To(BeFalse(), topic)
	}
	g.Eventually(func(g Gomega) []string { return eventNotes(g, goneEvents, sluicev1.EventTopicsDeleted) }).WithTimeout(timeout).WithPolling(poll).
		Should(ContainElement("deleted topics gone.retry.1, gone.retry.2, gone.retry.3, gone.dlq, gone.dlq.parked (deletionPolicy Delete)"),
			"the parked topic that existed is deleted; those that never did are not reported")
	g.Expect(k.topicExists(t, "kept.dlq")).To(BeTrue(), "Retain keeps the topics")
	g.Expect(k.topicExists(t, "orders")).To(BeTrue(), "the source topic is never deleted")
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}
