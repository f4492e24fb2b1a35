package controllers

import (
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/workerconfig"
)

// TestKeyOrderedPipelineRendersAConfigTheWorkerAccepts: a pipeline with
// ordering Key alone passes the operator's own check of the worker config
// (workerconfig.Validate: maxInFlight in range, a poll that holds it) and its
// ConfigMap carries the defaults that follow the ordering.
func TestKeyOrderedPipelineRendersAConfigTheWorkerAccepts(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	sp := logPipeline(ns, "keyed")
	sp.Spec.Processing.Ordering = sluicev1.OrderingKey
	create(t, sp)

	g.Eventually(func(g Gomega) {
		cfg := workerConfigOf(g, sp)
		g.Expect(cfg.Processing).To(Equal(workerconfig.Processing{Ordering: workerconfig.OrderingKey, MaxInFlight: 64}))
		g.Expect(cfg.Consumer.MaxPollRecords).To(Equal(int32(256)))
		getDeployment(g, sp)
		p := getPipeline(g, ns, "keyed")
		g.Expect(p.Status.ObservedGeneration).To(Equal(p.Generation))
		g.Expect(condition(p, sluicev1.ConditionStalled).Status).To(Equal(metav1.ConditionFalse))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())

	// Unordered with a larger maxInFlight: the config follows.
	updatePipeline(t, ns, "keyed", func(p *sluicev1.StreamPipeline) {
		p.Spec.Processing = sluicev1.ProcessingSpec{Ordering: sluicev1.OrderingUnordered, MaxInFlight: new(int32(512))}
	})
	g.Eventually(func(g Gomega) {
		cfg := workerConfigOf(g, sp)
		g.Expect(cfg.Processing).To(Equal(workerconfig.Processing{Ordering: workerconfig.OrderingUnordered, MaxInFlight: 512}))
		g.Expect(cfg.Consumer.MaxPollRecords).To(Equal(int32(2048)))
		p := getPipeline(g, ns, "keyed")
		g.Expect(p.Status.ObservedGeneration).To(Equal(p.Generation))
		g.Expect(condition(p, sluicev1.ConditionStalled).Status).To(Equal(metav1.ConditionFalse))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
}
