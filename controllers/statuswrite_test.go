package controllers

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// TestStatusWriteIsValidFromAStaleStartingPoint pins the status write against
// a server status that differs from what the reconcile started from: the
// situation right after an operator restart, when the cache has not yet seen
// the previous write. The server's status has no lag (the last write removed
// it); the reconcile's original still has the old lag and its new status a
// lag that differs in a few fields. A merge patch from that original carried
// only the changed lag fields and was rejected ("status.lag.maxPartition:
// Required value"); the write must succeed and leave exactly the new status.
func TestStatusWriteIsValidFromAStaleStartingPoint(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	create(t, logPipeline(ns, "stale"))

	measured := metav1.NewTime(time.Now().Truncate(time.Second))
	oldLag := &sluicev1.LagStatus{Total: 40, MaxPartition: 10, PartitionsWithLag: 4, MeasuredAt: measured}
	newLag := &sluicev1.LagStatus{Total: 40, MaxPartition: 10, PartitionsWithLag: 4, MeasuredAt: measured, Seconds: ptr.To[int64](7)}

	// The suite's reconciler writes this pipeline's status too; each round
	// sets up the stale situation afresh and checks one write.
	for range 3 {
		// Setting the stage races the suite's reconciler's own writes: a
		// conflict there is retried (what is tested is writeStatus below).
		var server *sluicev1.StreamPipeline
		g.Eventually(func(g Gomega) {
			server = getPipeline(g, ns, "stale")
			server.Status.Lag = nil
			g.Expect(k8s.Status().Update(ctx, server)).To(Succeed())
		}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())

		sp := server.DeepCopy() // the stale original had oldLag; the reconcile computed newLag
		original := sp.DeepCopy()
		original.Status.Lag = oldLag
		sp.Status.Lag = newLag
		sp.Status.Replicas = 3
		g.Expect(equality.Semantic.DeepEqual(original.Status, sp.Status)).To(BeFalse())

		g.Expect(reconciler.writeStatus(ctx, sp)).To(Succeed())
		// sp now holds the API server's answer to the write.
		g.Expect(sp.Status.Lag).NotTo(BeNil())
		g.Expect(*sp.Status.Lag).To(Equal(*newLag))
		g.Expect(sp.Status.Replicas).To(Equal(int32(3)))
	}
}
