package controllers

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/render"
)

// The workers run as a Deployment, or as a StatefulSet when they are static
// members of their group (spec.consumer.membership Static: the pod names are
// their group.instance.ids). workload is what the operator reads of either.
type workload struct {
	object  client.Object
	kind    string
	status  workloadStatus
	created bool
}

// workloadStatus is the part of a Deployment's or a StatefulSet's status the
// operator reads.
type workloadStatus struct {
	generation, observedGeneration      int64
	replicas, updated, ready, available int32
	// deadlineExceeded is the message of a Deployment's
	// ProgressDeadlineExceeded condition (a StatefulSet has no deadline).
	deadlineExceeded string
}

func deploymentStatus(d *appsv1.Deployment) workloadStatus {
	st := workloadStatus{
		generation: d.Generation, observedGeneration: d.Status.ObservedGeneration,
		replicas: d.Status.Replicas, updated: d.Status.UpdatedReplicas,
		ready: d.Status.ReadyReplicas, available: d.Status.AvailableReplicas,
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse && c.Reason == "ProgressDeadlineExceeded" {
			st.deadlineExceeded = c.Message
		}
	}
	return st
}

// statefulSetStatus: updatedReplicas counts the pods of the update revision,
// so a rolling update is done when it covers every pod.
func statefulSetStatus(ss *appsv1.StatefulSet) workloadStatus {
	return workloadStatus{
		generation: ss.Generation, observedGeneration: ss.Status.ObservedGeneration,
		replicas: ss.Status.Replicas, updated: ss.Status.UpdatedReplicas,
		ready: ss.Status.ReadyReplicas, available: ss.Status.AvailableReplicas,
	}
}

// workloadKinds are the worker workload of sp and the one it does not use.
func workloadKinds(sp *sluicev1.StreamPipeline) (used, other client.Object) {
	if sp.Static() {
		return &appsv1.StatefulSet{}, &appsv1.Deployment{}
	}
	return &appsv1.Deployment{}, &appsv1.StatefulSet{}
}

// kindName names a workload's kind (a typed object read from the API has
// no kind set).
func kindName(obj client.Object) string {
	if _, ok := obj.(*appsv1.StatefulSet); ok {
		return "StatefulSet"
	}
	return "Deployment"
}

func specReplicas(obj client.Object) *int32 {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return o.Spec.Replicas
	case *appsv1.StatefulSet:
		return o.Spec.Replicas
	}
	return nil
}

func templateAnnotations(obj client.Object) map[string]string {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return o.Spec.Template.Annotations
	case *appsv1.StatefulSet:
		return o.Spec.Template.Annotations
	}
	return nil
}

// reconcileReplicas decides the worker count this reconcile applies and
// records a change in status.lastScale, before the worker config is rendered:
// the config tells the pods a scale-up starts that they need not wait their
// startup jitter. On a switch of membership the count of the workload being
// replaced carries over.
func (r *StreamPipelineReconciler) reconcileReplicas(ctx context.Context, s *scope) error {
	sp := s.sp
	var current *int32
	used, other := workloadKinds(sp)
	for _, existing := range []client.Object{used, other} {
		if err := r.Get(ctx, client.ObjectKey{Namespace: sp.Namespace, Name: render.WorkerName(sp)}, existing); err == nil && controlledBy(existing, sp) {
			current = specReplicas(existing)
			s.previousReplicas = current
			break
		}
	}
	if n, ok := r.observer.lastApplied(pipelineKey(sp)); ok && current != nil {
		s.previousReplicas = &n
	}
	s.desiredReplicas = desiredReplicas(s, current)
	recordScale(s)
	// The cached pipeline may predate the last status write (a reconcile
	// right after one that scaled): its lastScale would then overwrite the
	// one just written. The observer keeps the last one this process wrote.
	s.sp.Status.LastScale = r.observer.keepLastScale(pipelineKey(sp), s.sp.Status.LastScale)
	return nil
}

// reconcileWorkload applies the worker Deployment or StatefulSet with the
// replica count the operator decided on, removes the other kind after a
// switch of membership, and records what changed for the events and status.
func (r *StreamPipelineReconciler) reconcileWorkload(ctx context.Context, s *scope) error {
	sp := s.sp
	if sp.Spec.Image == "" && r.WorkerImage == "" {
		return stalled(sluicev1.ReasonWorkerImageMissing,
			"no worker image: set spec.image, or start the operator with --worker-image")
	}

	params := render.DeploymentParams{Image: r.WorkerImage, ConfigHash: s.configHash, Replicas: s.desiredReplicas}
	w := &workload{}
	var res applyResult
	var err error
	if sp.Static() {
		ss := render.StatefulSet(sp, params)
		res, err = r.apply(ctx, sp, ss)
		w.object, w.kind, w.status = ss, kindName(ss), statefulSetStatus(ss)
	} else {
		d := render.Deployment(sp, params)
		res, err = r.apply(ctx, sp, d)
		w.object, w.kind, w.status = d, kindName(d), deploymentStatus(d)
	}
	if err != nil {
		return err
	}
	w.created = res.created
	s.workload = w
	if res.previous != nil {
		s.previousConfigHash = templateAnnotations(res.previous)[sluicev1.AnnotationConfigHash]
	}
	if err := r.removeReplacedWorkload(ctx, s); err != nil {
		return err
	}

	r.observer.setApplied(pipelineKey(sp), s.desiredReplicas)
	if !evaluateRollout(w, s.desiredReplicas).complete {
		s.podProblems = r.podProblems(ctx, s)
	}
	sp.Status.DesiredReplicas = s.desiredReplicas
	sp.Status.Replicas = w.status.replicas
	sp.Status.ReadyReplicas = w.status.ready
	return nil
}

// removeReplacedWorkload deletes the workload kind the pipeline no longer
// uses (membership switched); the garbage collector then stops its pods
// while the new workload's start. A static member left behind is removed
// from the group by reconcileStaticMembers.
func (r *StreamPipelineReconciler) removeReplacedWorkload(ctx context.Context, s *scope) error {
	sp := s.sp
	_, other := workloadKinds(sp)
	if err := r.Get(ctx, client.ObjectKey{Namespace: sp.Namespace, Name: render.WorkerName(sp)}, other); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !controlledBy(other, sp) {
		return nil
	}
	if err := r.Delete(ctx, other, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete the replaced worker workload %s: %w", other.GetName(), err)
	}
	s.replacedWorkload = kindName(other)
	return nil
}

// controlledBy says whether sp is obj's controller.
func controlledBy(obj client.Object, sp *sluicev1.StreamPipeline) bool {
	owner := metav1.GetControllerOf(obj)
	return owner != nil && owner.UID == sp.UID
}
