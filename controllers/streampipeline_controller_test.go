package controllers

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/render"
	"github.com/sluice-dev/sluice/internal/workerconfig"
)

func TestCreatingAPipelineRendersItsWorkload(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	sp := logPipeline(ns, "orders")
	create(t, sp)
	ctx := context.Background()

	// The Deployment: one worker, the operator's image, the config hash, the
	// tuned grace period, probes and the restricted security profile.
	g.Eventually(func(g Gomega) {
		d := getDeployment(g, sp)
		g.Expect(*d.Spec.Replicas).To(Equal(int32(1)))
		pod := d.Spec.Template.Spec
		g.Expect(pod.Containers).To(HaveLen(1))
		c := pod.Containers[0]
		g.Expect(c.Image).To(Equal(testImage))
		g.Expect(c.Args).To(ConsistOf("--config=/etc/sluice/config/worker.yaml"))
		g.Expect(c.LivenessProbe.HTTPGet.Path).To(Equal("/healthz"))
		g.Expect(c.ReadinessProbe.HTTPGet.Path).To(Equal("/readyz"))
		g.Expect(*c.SecurityContext.ReadOnlyRootFilesystem).To(BeTrue())
		g.Expect(*c.SecurityContext.AllowPrivilegeEscalation).To(BeFalse())
		g.Expect(c.SecurityContext.Capabilities.Drop).To(ConsistOf(corev1.Capability("ALL")))
		g.Expect(*pod.SecurityContext.RunAsNonRoot).To(BeTrue())
		g.Expect(pod.SecurityContext.SeccompProfile.Type).To(Equal(corev1.SeccompProfileTypeRuntimeDefault))
		// min(maxPollInterval 10m, 100 records × 30s) + 15s to commit and leave.
		g.Expect(*pod.TerminationGracePeriodSeconds).To(Equal(int64(615)))
		g.Expect(pod.ServiceAccountName).To(Equal("orders-worker"))
		g.Expect(d.Spec.Template.Annotations).To(HaveKeyWithValue(sluicev1.AnnotationConfigHash, Not(BeEmpty())))
		g.Expect(d.OwnerReferences).To(ContainElement(HaveField("Name", "orders")))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())

	// The ConfigMap holds a worker config that the worker itself accepts, with the
	// effective (derived) names filled in.
	cm := &corev1.ConfigMap{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "orders-worker-config"}, cm)).To(Succeed())
	cfg, err := workerconfig.Parse([]byte(cm.Data[workerconfig.FileName]))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cfg.Source.ConsumerGroup).To(Equal(ns + ".orders"))
	// The retry and dead-letter topics are named after the consumer group.
	g.Expect(cfg.Delivery.DeadLetterTopic).To(Equal(ns + ".orders.dlq"))
	g.Expect(cfg.Delivery.RetryTopics).To(Equal([]string{ns + ".orders.retry.1", ns + ".orders.retry.2", ns + ".orders.retry.3"}))
	g.Expect(cfg.Consumer.MaxPollRecords).To(Equal(int32(100)))
	g.Expect(cfg.Consumer.FetchMaxBytes).To(Equal(int32(1 << 20)))
	g.Expect(cfg.Consumer.MaxPartitionFetchBytes).To(Equal(int32(256 << 10)))
	g.Expect(cfg.Startup.MaxJitter.Duration.String()).To(Equal("5s"))
	g.Expect(cm.OwnerReferences).To(ContainElement(HaveField("Name", "orders")))
	d := getDeployment(g, sp)
	g.Expect(d.Spec.Template.Annotations[sluicev1.AnnotationConfigHash]).To(Equal(render.Hash([]byte(cm.Data[workerconfig.FileName]))))

	// The ServiceAccount (no API token) and the PodDisruptionBudget.
	sa := &corev1.ServiceAccount{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "orders-worker"}, sa)).To(Succeed())
	g.Expect(*sa.AutomountServiceAccountToken).To(BeFalse())
	g.Expect(sa.OwnerReferences).To(ContainElement(HaveField("Name", "orders")))
	pdb := &policyv1.PodDisruptionBudget{}
	// The budget is applied after the Deployment, in the same reconcile.
	g.Eventually(func() error { return k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "orders-worker"}, pdb) }).
		WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	g.Expect(pdb.Spec.MaxUnavailable.IntValue()).To(Equal(1))
	g.Expect(pdb.Spec.Selector.MatchLabels).To(Equal(d.Spec.Selector.MatchLabels))
	g.Expect(pdb.OwnerReferences).To(ContainElement(HaveField("Name", "orders")))

	// Status: generation observed, workers rolling out (nobody runs pods here),
	// derived names reported, Kafka-side figures measured on the suite's Kafka.
	g.Eventually(func(g Gomega) {
		sp := getPipeline(g, ns, "orders")
		g.Expect(sp.Status.ObservedGeneration).To(Equal(sp.Generation))
		g.Expect(condition(sp, sluicev1.ConditionReady).Status).To(Equal(metav1.ConditionFalse))
		g.Expect(condition(sp, sluicev1.ConditionReady).Reason).To(Equal(sluicev1.ReasonRollingOut))
		g.Expect(condition(sp, sluicev1.ConditionReconciling).Status).To(Equal(metav1.ConditionTrue))
		g.Expect(condition(sp, sluicev1.ConditionStalled).Status).To(Equal(metav1.ConditionFalse))
		g.Expect(sp.Status.DesiredReplicas).To(Equal(int32(1)))
		g.Expect(sp.Status.ConsumerGroup).To(Equal(ns + ".orders"))
		g.Expect(sp.Status.DeadLetter.Topic).To(Equal(ns + ".orders.dlq"))
		g.Expect(sp.Status.DeadLetter.Records).To(HaveValue(BeZero()))
		g.Expect(sp.Status.Lag).NotTo(BeNil())
		g.Expect(sp.Status.Lag.Total).To(BeZero())
		g.Expect(sp.Status.Partitions).To(HaveValue(Equal(int32(6))))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())

	g.Eventually(func(g Gomega) []string { return eventReasons(g, sp) }).
		WithTimeout(timeout).WithPolling(poll).Should(ContainElement(sluicev1.EventWorkloadCreated))
}

func TestPipelineBecomesReadyWhenTheWorkersAreAvailable(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	sp := logPipeline(ns, "ready")
	sp.Spec.Scaling.MinReplicas = new(int32(3))
	create(t, sp)
	g.Eventually(func(g Gomega) { getDeployment(g, sp) }).WithTimeout(timeout).Should(Succeed())

	rollOut(t, sp)

	g.Eventually(func(g Gomega) {
		sp := getPipeline(g, ns, "ready")
		ready := condition(sp, sluicev1.ConditionReady)
		g.Expect(ready.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(ready.Reason).To(Equal(sluicev1.ReasonSucceeded))
		g.Expect(ready.Message).To(ContainSubstring("3 of 3 workers available"))
		g.Expect(ready.ObservedGeneration).To(Equal(sp.Generation))
		g.Expect(condition(sp, sluicev1.ConditionReconciling).Status).To(Equal(metav1.ConditionFalse))
		g.Expect(condition(sp, sluicev1.ConditionStalled).Status).To(Equal(metav1.ConditionFalse))
		g.Expect(sp.Status.Replicas).To(Equal(int32(3)))
		g.Expect(sp.Status.ReadyReplicas).To(Equal(int32(3)))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	g.Eventually(func(g Gomega) []string { return eventReasons(g, sp) }).
		WithTimeout(timeout).WithPolling(poll).Should(ContainElement(sluicev1.EventReady))
}

func TestReconcilingAgainChangesNothing(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	sp := logPipeline(ns, "steady")
	create(t, sp)
	rollOut(t, sp)
	waitReady(t, ns, "steady")
	before := getDeployment(g, sp)
	cm := &corev1.ConfigMap{}
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "steady-worker-config"}, cm)).To(Succeed())

	for range 3 {
		_, err := reconciler.Reconcile(context.Background(), requestFor(sp))
		g.Expect(err).NotTo(HaveOccurred())
	}

	after := getDeployment(g, sp)
	g.Expect(after.Generation).To(Equal(before.Generation), "a no-op reconcile must not roll the workers")
	g.Expect(after.ResourceVersion).To(Equal(before.ResourceVersion))
	cmAfter := &corev1.ConfigMap{}
	g.Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(cm), cmAfter)).To(Succeed())
	g.Expect(cmAfter.ResourceVersion).To(Equal(cm.ResourceVersion))
}

func TestDriftInTheDeploymentIsReverted(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	sp := logPipeline(ns, "drift")
	create(t, sp)
	g.Eventually(func(g Gomega) {
		d := getDeployment(g, sp)
		d.Spec.Template.Spec.Containers[0].Image = "someone-else:latest"
		g.Expect(k8s.Update(context.Background(), d)).To(Succeed())
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())

	g.Eventually(func(g Gomega) string {
		return getDeployment(g, sp).Spec.Template.Spec.Containers[0].Image
	}).WithTimeout(timeout).WithPolling(poll).Should(Equal(testImage))
}

// TestSpecWhoseDefaultNamesCollideStallsBeforeTouchingKafka: with the default
// consumer group ("<namespace>.<name>", which admission rules can't see) the
// default dead-letter topic is the source topic here. The operator checks the
// rendered worker config as the worker would, and stalls with its message
// before it provisions anything (it would have set the topic policy on the
// source topic) or starts a pod that can't run.
func TestSpecWhoseDefaultNamesCollideStallsBeforeTouchingKafka(t *testing.T) {
	g := NewWithT(t)
	k := newKafka(t, 1)
	ns := newNamespace(t)
	source := ns + ".loop.dlq"
	_, err := k.adm.CreateTopic(context.Background(), 1, 1, nil, source)
	g.Expect(err).NotTo(HaveOccurred())
	sp := logPipeline(ns, "loop")
	sp.Spec.Kafka.BootstrapServers = k.cluster.ListenAddrs()
	sp.Spec.Source.Topic = source
	create(t, sp)
	g.Eventually(func(g Gomega) {
		st := condition(getPipeline(g, ns, "loop"), sluicev1.ConditionStalled)
		g.Expect(st.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(st.Reason).To(Equal(sluicev1.ReasonInvalidWorkerConfig))
		g.Expect(st.Message).To(And(ContainSubstring("delivery.deadLetterTopic"), ContainSubstring("must differ from source.topic")))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	g.Expect(k.topicExists(t, sp.RetryTopics()[0])).To(BeFalse(), "nothing was provisioned")
	g.Expect(apierrors.IsNotFound(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "loop-worker"}, &appsv1.Deployment{}))).To(BeTrue())
}
