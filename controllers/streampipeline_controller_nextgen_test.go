package controllers

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kversion"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/render"
	"github.com/sluice-dev/sluice/internal/workerconfig"
)

func nextGenPipeline(k *testKafka, ns, name string) *sluicev1.StreamPipeline {
	sp := logPipeline(ns, name)
	sp.Spec.Kafka.BootstrapServers = k.cluster.ListenAddrs()
	sp.Spec.Consumer.GroupProtocol = sluicev1.GroupProtocolConsumer
	return sp
}

// TestNextGenPipelineSetsTheGroupsTimings: with groupProtocol Consumer the
// session timeout and heartbeat interval the spec sets are written on the
// group (KIP-848 keeps them there), a hand edit is put back, and the
// workers are told to speak the protocol; a classic pipeline has neither
// the condition nor the setting.
func TestNextGenPipelineSetsTheGroupsTimings(t *testing.T) {
	g := NewWithT(t)
	k := newKafka(t, 2)
	ns := newNamespace(t)
	sp := nextGenPipeline(k, ns, "nextgen")
	sp.Spec.Consumer.SessionTimeout = &metav1.Duration{Duration: 50 * time.Second}
	sp.Spec.Consumer.HeartbeatInterval = &metav1.Duration{Duration: 6 * time.Second}
	sp.Spec.Consumer.MaxPollInterval = &metav1.Duration{Duration: 5 * time.Minute}
	create(t, sp)
	group := sp.ConsumerGroup()
	g.Eventually(func(g Gomega) {
		c := condition(getPipeline(g, ns, sp.Name), sluicev1.ConditionConsumerGroupReady)
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue), c.Message)
		g.Expect(c.Reason).To(Equal(sluicev1.ReasonConsumerGroupConfigured))
		g.Expect(c.Message).To(ContainSubstring("session timeout 50s, heartbeat interval 6s"))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	g.Expect(k.groupConfig(t, group, "consumer.session.timeout.ms")).To(Equal("50000"))
	g.Expect(k.groupConfig(t, group, "consumer.heartbeat.interval.ms")).To(Equal("6000"))
	g.Eventually(func(g Gomega) {
		g.Expect(workerConfigOf(g, sp).Consumer.GroupProtocol).To(Equal(workerconfig.GroupProtocolConsumer))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())

	k.cluster.SetGroupConfigs(group, map[string]string{"consumer.session.timeout.ms": "45000"})
	g.Eventually(func() string { return k.groupConfig(t, group, "consumer.session.timeout.ms") }).
		WithTimeout(timeout).WithPolling(poll).Should(Equal("50000"), "a hand edit is put back at the next resync")

	// Unset timings: the broker's defaults (Sluice's classic defaults are
	// below KIP-848's minimums), nothing written.
	plain := nextGenPipeline(k, ns, "defaults")
	plain.Spec.Delivery.DeadLetterTopic, plain.Spec.Delivery.Retry.TopicPrefix = "defaults.dlq", "defaults.retry"
	create(t, plain)
	g.Eventually(func(g Gomega) {
		c := condition(getPipeline(g, ns, plain.Name), sluicev1.ConditionConsumerGroupReady)
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue), c.Message)
		g.Expect(c.Message).To(ContainSubstring("session timeout the broker's default, heartbeat interval the broker's default"))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	g.Expect(k.groupConfig(t, plain.ConsumerGroup(), "consumer.session.timeout.ms")).To(BeEmpty())

	classic := logPipeline(ns, "classic")
	classic.Spec.Kafka.BootstrapServers = k.cluster.ListenAddrs()
	classic.Spec.Delivery.DeadLetterTopic, classic.Spec.Delivery.Retry.TopicPrefix = "classic.dlq", "classic.retry"
	create(t, classic)
	g.Eventually(func(g Gomega) {
		g.Expect(workerConfigOf(g, classic).Consumer.GroupProtocol).To(BeEmpty())
		g.Expect(condition(getPipeline(g, ns, classic.Name), sluicev1.ConditionTopicsReady).Status).To(Equal(metav1.ConditionTrue))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	g.Expect(condition(getPipeline(g, ns, classic.Name), sluicev1.ConditionConsumerGroupReady).Type).To(BeEmpty(), "a classic pipeline has no ConsumerGroupReady")
}

// TestNextGenPipelineOnAClusterWithoutKIP848Stalls: Kafka 3.9 has no
// ConsumerGroupHeartbeat v1; the pipeline says so and creates no workers.
func TestNextGenPipelineOnAClusterWithoutKIP848Stalls(t *testing.T) {
	g := NewWithT(t)
	k := newKafka(t, 2, kfake.MaxVersions(kversion.V3_9_0()))
	sp := nextGenPipeline(k, newNamespace(t), "old-cluster")
	create(t, sp)
	g.Eventually(func(g Gomega) {
		p := getPipeline(g, sp.Namespace, sp.Name)
		c := condition(p, sluicev1.ConditionConsumerGroupReady)
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(sluicev1.ReasonConsumerGroupsUnsupported))
		g.Expect(c.Message).To(ContainSubstring("use groupProtocol Classic"))
		g.Expect(condition(p, sluicev1.ConditionStalled).Status).To(Equal(metav1.ConditionTrue))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	g.Consistently(func() bool {
		return apierrors.IsNotFound(k8s.Get(context.Background(), client.ObjectKey{Namespace: sp.Namespace, Name: render.WorkerName(sp)}, &appsv1.Deployment{}))
	}).WithTimeout(time.Second).WithPolling(poll).Should(BeTrue(), "no Deployment on a cluster without KIP-848")
}
