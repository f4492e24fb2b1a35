package controllers

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/render"
)

// reconcileReplicas decides the worker count this reconcile applies and
// records a change in status.lastScale, before the worker config is rendered:
// the config tells the pods a scale-up starts that they need not wait their
// startup jitter.
func (r *StreamPipelineReconciler) reconcileReplicas(ctx context.Context, s *scope) error {
	sp := s.sp
	var current *int32
	existing := &appsv1.Deployment{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: sp.Namespace, Name: render.WorkerName(sp)}, existing); err == nil {
		current = existing.Spec.Replicas
		s.previousReplicas = current
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

// reconcileDeployment applies the worker Deployment with the replica count the
// operator decided on, and records what changed for the events and status.
func (r *StreamPipelineReconciler) reconcileDeployment(ctx context.Context, s *scope) error {
	sp := s.sp
	if sp.Spec.Image == "" && r.WorkerImage == "" {
		return stalled(sluicev1.ReasonWorkerImageMissing,
			"no worker image: set spec.image, or start the operator with --worker-image")
	}

	d := render.Deployment(sp, render.DeploymentParams{
		Image:      r.WorkerImage,
		ConfigHash: s.configHash,
		Replicas:   s.desiredReplicas,
	})
	res, err := r.apply(ctx, sp, d)
	if err != nil {
		return err
	}
	s.deployment = d
	s.deploymentCreated = res.created
	if prev, ok := res.previous.(*appsv1.Deployment); ok {
		s.previousConfigHash = prev.Spec.Template.Annotations[sluicev1.AnnotationConfigHash]
	}

	r.observer.setApplied(pipelineKey(sp), s.desiredReplicas)
	if !evaluateRollout(d, s.desiredReplicas).complete {
		s.podProblems = r.podProblems(ctx, s)
	}
	sp.Status.DesiredReplicas = s.desiredReplicas
	sp.Status.Replicas = d.Status.Replicas
	sp.Status.ReadyReplicas = d.Status.ReadyReplicas
	return nil
}
