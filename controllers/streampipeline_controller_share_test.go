package controllers

import (
	"context"
	"strconv"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/render"
	"github.com/sluice-dev/sluice/internal/workerconfig"
)

// sharePipeline is a groupType Share pipeline on k: 2 retries, scaling on
// lag with a target of 10 records per replica up to 6 replicas.
func sharePipeline(t *testing.T, k *testKafka, name string) *sluicev1.StreamPipeline {
	sp := logPipeline(newNamespace(t), name)
	sp.Spec.Kafka.BootstrapServers = k.cluster.ListenAddrs()
	sp.Spec.Source.GroupType = sluicev1.GroupTypeShare
	sp.Spec.Processing.Ordering = sluicev1.OrderingUnordered
	sp.Spec.Delivery.Retry.Attempts = new(int32(2))
	sp.Spec.Scaling = sluicev1.ScalingSpec{
		MinReplicas:    new(int32(1)),
		MaxReplicas:    new(int32(6)),
		LagThreshold:   new(int64(10)),
		MaxScaleUpStep: new(int32(10)),
		PollInterval:   &metav1.Duration{Duration: 200 * time.Millisecond},
	}
	return sp
}

// groupConfig is a config set on a group (empty when not set).
func (k *testKafka) groupConfig(t *testing.T, group, name string) string {
	t.Helper()
	req := kmsg.NewPtrDescribeConfigsRequest()
	res := kmsg.NewDescribeConfigsRequestResource()
	res.ResourceType, res.ResourceName = kmsg.ConfigResourceTypeGroupConfig, group
	req.Resources = append(req.Resources, res)
	resp, err := req.RequestWith(context.Background(), k.client)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resp.Resources {
		for _, c := range r.Configs {
			if c.Name == name && c.Source == kmsg.ConfigSourceGroupConfig && c.Value != nil {
				return *c.Value
			}
		}
	}
	return ""
}

// TestSharePipelineConfiguresItsGroupAndScalesPastThePartitions: a groupType
// Share pipeline gets its share group's configs from the spec (start, lock,
// the session timeout and heartbeat interval it sets, and Kafka's highest
// delivery count limit, 10, for crashes), kept
// when changed by hand; no retry topics, only the dead-letter topic; workers
// configured as share members; `kubectl get` says Share; and a backlog on a
// 2-partition topic scales it to maxReplicas (6), past the partition count.
func TestSharePipelineConfiguresItsGroupAndScalesPastThePartitions(t *testing.T) {
	g := NewWithT(t)
	k := newKafka(t, 2)
	sp := sharePipeline(t, k, "shared")
	sp.Spec.Consumer.SessionTimeout = &metav1.Duration{Duration: 50 * time.Second}
	sp.Spec.Consumer.HeartbeatInterval = &metav1.Duration{Duration: 6 * time.Second}
	create(t, sp)
	group := sp.ConsumerGroup()

	g.Eventually(func(g Gomega) {
		p := getPipeline(g, sp.Namespace, sp.Name)
		c := condition(p, sluicev1.ConditionShareGroupReady)
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue), c.Message)
		g.Expect(c.Reason).To(Equal(sluicev1.ReasonShareGroupConfigured))
		g.Expect(c.Message).To(ContainSubstring("archived after 10 deliveries"))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	g.Expect(k.groupConfig(t, group, "share.auto.offset.reset")).To(Equal("earliest"))
	g.Expect(k.groupConfig(t, group, "share.delivery.count.limit")).To(Equal("10"))
	g.Expect(k.groupConfig(t, group, "share.record.lock.duration.ms")).To(Equal(strconv.FormatInt(sp.ShareRecordLockDuration().Milliseconds(), 10)))
	g.Expect(k.groupConfig(t, group, "share.session.timeout.ms")).To(Equal("50000"))
	g.Expect(k.groupConfig(t, group, "share.heartbeat.interval.ms")).To(Equal("6000"))
	g.Expect(k.topicExists(t, sp.DeadLetterTopic())).To(BeTrue())
	g.Expect(k.topicExists(t, group+sluicev1.RetrySuffix+".1")).To(BeFalse(), "a share group retries by redelivery: no retry topics")

	g.Eventually(func(g Gomega) {
		cfg := workerConfigOf(g, sp)
		g.Expect(cfg.Source.GroupType).To(Equal(workerconfig.GroupTypeShare))
		g.Expect(cfg.Source.Share).NotTo(BeNil())
		g.Expect(cfg.Source.Share.DeliveryCountLimit).To(Equal(int32(10)))
		g.Expect(cfg.Source.Share.RetryAttempts).To(Equal(int32(2)))
		g.Expect(cfg.Delivery.RetryTopics).To(BeEmpty())
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	g.Eventually(func(g Gomega) string {
		table := getTable(g, sp.Namespace, sp.Name)
		for i, c := range table.ColumnDefinitions {
			if c.Name == "GroupType" && len(table.Rows) == 1 {
				return table.Rows[0].Cells[i].(string)
			}
		}
		return ""
	}).WithTimeout(timeout).WithPolling(poll).Should(Equal("Share"))

	// A hand edit is put back at the next resync.
	k.cluster.SetGroupConfigs(group, map[string]string{"share.delivery.count.limit": "2"})
	g.Eventually(func() string { return k.groupConfig(t, group, "share.delivery.count.limit") }).
		WithTimeout(timeout).WithPolling(poll).Should(Equal("10"))

	// 200 records of lag want 20 replicas: 6 (maxReplicas), not 2 (partitions).
	rollOut(t, sp)
	k.produce(t, "orders", []int32{0, 1}, 100, time.Now())
	g.Eventually(func(g Gomega) {
		p := getPipeline(g, sp.Namespace, sp.Name)
		g.Expect(p.Status.Lag.Total).To(Equal(int64(200)))
		g.Expect(deploymentReplicas(g, sp)).To(Equal(int32(6)))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	g.Expect(getPipeline(g, sp.Namespace, sp.Name).Status.StartingOffsetsCommitted).To(BeNil(), "a share group commits no offsets")
}

// TestSharePipelineOnAClusterWithoutShareGroupsStalls: on a cluster whose
// brokers don't offer share groups (Kafka 3.9 here) the pipeline says so and
// creates no workers.
func TestSharePipelineOnAClusterWithoutShareGroupsStalls(t *testing.T) {
	g := NewWithT(t)
	k := newKafka(t, 2, kfake.MaxVersions(kversion.V3_9_0()))
	sp := sharePipeline(t, k, "no-share")
	create(t, sp)
	g.Eventually(func(g Gomega) {
		p := getPipeline(g, sp.Namespace, sp.Name)
		c := condition(p, sluicev1.ConditionShareGroupReady)
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(sluicev1.ReasonShareGroupsUnsupported))
		g.Expect(c.Message).To(ContainSubstring("ShareFetch"))
		g.Expect(condition(p, sluicev1.ConditionStalled).Status).To(Equal(metav1.ConditionTrue))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	g.Consistently(func() bool {
		return apierrors.IsNotFound(k8s.Get(context.Background(), client.ObjectKey{Namespace: sp.Namespace, Name: render.WorkerName(sp)}, &appsv1.Deployment{}))
	}).WithTimeout(time.Second).WithPolling(poll).Should(BeTrue(), "no Deployment on a cluster without share groups")
}
