package controllers

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

func TestSuspendScalesToZeroAndKeepsTheRest(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	sp := logPipeline(ns, "pausable")
	sp.Spec.Scaling.MinReplicas = new(int32(2))
	create(t, sp)
	rollOut(t, sp)
	waitReady(t, ns, "pausable")

	updatePipeline(t, ns, "pausable", func(p *sluicev1.StreamPipeline) { p.Spec.Suspend = true })

	g.Eventually(func(g Gomega) {
		g.Expect(*getDeployment(g, sp).Spec.Replicas).To(Equal(int32(0)))
		p := getPipeline(g, ns, "pausable")
		g.Expect(p.Status.DesiredReplicas).To(Equal(int32(0)))
		ready := condition(p, sluicev1.ConditionReady)
		g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(ready.Reason).To(Equal(sluicev1.ReasonSuspended))
		g.Expect(condition(p, sluicev1.ConditionStalled).Status).To(Equal(metav1.ConditionFalse))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	// Everything else stays: config, identity, disruption budget.
	ctx := context.Background()
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "pausable-worker-config"}, &corev1.ConfigMap{})).To(Succeed())
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "pausable-worker"}, &corev1.ServiceAccount{})).To(Succeed())
	g.Eventually(func(g Gomega) []string { return eventReasons(g, sp) }).
		WithTimeout(timeout).WithPolling(poll).Should(ContainElement(sluicev1.EventSuspended))

	updatePipeline(t, ns, "pausable", func(p *sluicev1.StreamPipeline) { p.Spec.Suspend = false })

	g.Eventually(func(g Gomega) int32 { return *getDeployment(g, sp).Spec.Replicas }).
		WithTimeout(timeout).WithPolling(poll).Should(Equal(int32(2)))
	g.Eventually(func(g Gomega) []string { return eventReasons(g, sp) }).
		WithTimeout(timeout).WithPolling(poll).Should(ContainElement(sluicev1.EventResumed))
}

func TestReplicasStayWithinTheScalingBounds(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	sp := logPipeline(ns, "bounded")
	create(t, sp)
	g.Eventually(func(g Gomega) { getDeployment(g, sp) }).WithTimeout(timeout).Should(Succeed())

	updatePipeline(t, ns, "bounded", func(p *sluicev1.StreamPipeline) {
		p.Spec.Scaling.MinReplicas = new(int32(4))
		p.Spec.Scaling.MaxReplicas = new(int32(6))
	})
	g.Eventually(func(g Gomega) int32 { return *getDeployment(g, sp).Spec.Replicas }).
		WithTimeout(timeout).WithPolling(poll).Should(Equal(int32(4)))
	g.Eventually(func(g Gomega) []string { return eventNotes(g, sp, sluicev1.EventScaled) }).
		WithTimeout(timeout).WithPolling(poll).Should(ContainElement(ContainSubstring("from 1 to 4")))
}
