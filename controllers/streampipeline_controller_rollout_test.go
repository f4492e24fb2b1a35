package controllers

import (
	"testing"
	"time"

	"context"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

func TestSpecChangeRollsTheWorkers(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	sp := logPipeline(ns, "rolling")
	create(t, sp)
	rollOut(t, sp)
	var hash string
	g.Eventually(func(g Gomega) {
		p := getPipeline(g, ns, "rolling")
		g.Expect(condition(p, sluicev1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
		hash = getDeployment(g, sp).Spec.Template.Annotations[sluicev1.AnnotationConfigHash]
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())

	updatePipeline(t, ns, "rolling", func(p *sluicev1.StreamPipeline) {
		p.Spec.Consumer.MaxPollRecords = new(int32(500))
	})

	g.Eventually(func(g Gomega) {
		d := getDeployment(g, sp)
		g.Expect(d.Spec.Template.Annotations[sluicev1.AnnotationConfigHash]).NotTo(Equal(hash))
		p := getPipeline(g, ns, "rolling")
		g.Expect(p.Generation).To(Equal(int64(2)))
		g.Expect(p.Status.ObservedGeneration).To(Equal(int64(2)))
		g.Expect(p.Status.WorkerConfigHash).To(Equal(d.Spec.Template.Annotations[sluicev1.AnnotationConfigHash]))
		// The Deployment controller hasn't rolled the new template out yet.
		g.Expect(condition(p, sluicev1.ConditionReady).Reason).To(Equal(sluicev1.ReasonRollingOut))
		g.Expect(condition(p, sluicev1.ConditionReconciling).Status).To(Equal(metav1.ConditionTrue))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	g.Eventually(func(g Gomega) []string { return eventNotes(g, sp, sluicev1.EventConfigChanged) }).
		WithTimeout(timeout).WithPolling(poll).Should(ContainElement(ContainSubstring(hash)))

	rollOut(t, sp)
	waitReady(t, ns, "rolling")
}

func TestFailedRolloutStallsThePipeline(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	sp := logPipeline(ns, "stuck")
	create(t, sp)
	g.Eventually(func(g Gomega) {
		d := getDeployment(g, sp)
		d.Status = appsv1.DeploymentStatus{
			ObservedGeneration: d.Generation,
			Replicas:           1,
			UpdatedReplicas:    1,
			Conditions: []appsv1.DeploymentCondition{{
				Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse,
				Reason:             "ProgressDeadlineExceeded",
				Message:            `ReplicaSet "stuck-worker-abc" has timed out progressing.`,
				LastUpdateTime:     metav1.NewTime(time.Now()),
				LastTransitionTime: metav1.NewTime(time.Now()),
			}},
		}
		g.Expect(k8s.Status().Update(context.Background(), d)).To(Succeed())
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())

	g.Eventually(func(g Gomega) {
		p := getPipeline(g, ns, "stuck")
		st := condition(p, sluicev1.ConditionStalled)
		g.Expect(st.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(st.Reason).To(Equal(sluicev1.ReasonRolloutFailed))
		g.Expect(st.Message).To(ContainSubstring("timed out progressing"))
		g.Expect(condition(p, sluicev1.ConditionReady).Status).To(Equal(metav1.ConditionFalse))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
}
