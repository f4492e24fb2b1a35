package testenv

import (
	"context"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// PlayDeploymentController marks every Deployment in ns rolled out (all replicas
// updated and available), as the kube-controller-manager, which envtest does not
// run, would. It polls every 250 ms until ctx ends.
func PlayDeploymentController(ctx context.Context, c client.Client, ns string) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
		list := &appsv1.DeploymentList{}
		if err := c.List(ctx, list, client.InNamespace(ns)); err != nil {
			continue
		}
		for i := range list.Items {
			d := &list.Items[i]
			n := ptr.Deref(d.Spec.Replicas, 1)
			if d.Status.ObservedGeneration == d.Generation && d.Status.UpdatedReplicas == n && d.Status.AvailableReplicas == n {
				continue
			}
			d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n}
			_ = c.Status().Update(ctx, d)
		}
	}
}
