// Package controllers holds the StreamPipeline reconciler. Reconcile reads as a
// list of phases (secrets → service account → worker config → deployment →
// disruption budget → observe), one file each; status and events are written
// once, in a deferred step, on every exit path.
package controllers

import (
	"context"
	"errors"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// FieldOwner is the server-side apply field manager of everything Sluice writes.
const FieldOwner = "sluice"

// StreamPipelineReconciler reconciles StreamPipelines into worker workloads.
type StreamPipelineReconciler struct {
	client.Client
	// APIReader reads without the cache; used for Secrets, so the operator never
	// caches (or needs to list) every Secret in the cluster.
	APIReader client.Reader
	Recorder  events.EventRecorder
	// WorkerImage is the worker image for pipelines that don't set spec.image.
	WorkerImage string
	// StalledRetryInterval is how soon a stalled pipeline is looked at again (a
	// missing Secret may appear).
	StalledRetryInterval time.Duration
}

// phase is one step of the reconcile; phases run in order and stop at the first
// error.
type phase func(ctx context.Context, s *scope) error

// +kubebuilder:rbac:groups=streaming.sluice.dev,resources=streampipelines,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=streaming.sluice.dev,resources=streampipelines/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=streaming.sluice.dev,resources=streampipelines/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=configmaps;serviceaccounts,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one StreamPipeline's workload in line with its spec.
func (r *StreamPipelineReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	sp := &sluicev1.StreamPipeline{}
	if err := r.Get(ctx, req.NamespacedName, sp); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !sp.DeletionTimestamp.IsZero() {
		// Owned objects are garbage-collected by Kubernetes through their owner
		// references; Kafka topics are retained.
		return ctrl.Result{}, nil
	}

	s := newScope(sp)
	defer func() {
		var err error
		result, err = r.finish(ctx, s, result, retErr)
		retErr = err
	}()

	for _, p := range []phase{
		r.reconcileSecrets,
		r.reconcileServiceAccount,
		r.reconcileWorkerConfig,
		r.reconcileDeployment,
		r.reconcileDisruptionBudget,
	} {
		if err := p(ctx, s); err != nil {
			return ctrl.Result{}, err
		}
	}
	return ctrl.Result{}, nil
}

// finish computes the conditions from what the phases saw, patches the status
// once and records the events. A stalled pipeline is not an error for the
// work queue (retrying at once can't help); it is looked at again later.
func (r *StreamPipelineReconciler) finish(ctx context.Context, s *scope, result ctrl.Result, reconcileErr error) (ctrl.Result, error) {
	var stalled *stalledError
	isStalled := errors.As(reconcileErr, &stalled)
	setConditions(s, reconcileErr)

	if err := r.Status().Patch(ctx, s.sp, client.MergeFrom(s.original)); err != nil {
		if !isStalled {
			return result, errors.Join(reconcileErr, err)
		}
		return result, err
	}
	r.recordEvents(s, reconcileErr)

	if isStalled {
		log.FromContext(ctx).Info("pipeline stalled", "reason", stalled.reason, "message", stalled.message)
		return ctrl.Result{RequeueAfter: r.StalledRetryInterval}, nil
	}
	return result, reconcileErr
}

// SetupWithManager registers the reconciler: it watches StreamPipelines (spec
// changes only) and everything they own.
func (r *StreamPipelineReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.StalledRetryInterval == 0 {
		r.StalledRetryInterval = 30 * time.Second
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&sluicev1.StreamPipeline{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.ConfigMap{}).
		Owns(&corev1.ServiceAccount{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		Named("streampipeline").
		Complete(r)
}
