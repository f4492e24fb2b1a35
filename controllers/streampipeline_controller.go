// Package controllers holds the StreamPipeline reconciler. Reconcile reads as a
// list of phases (secrets → service account → worker config → deployment →
// disruption budget → observe), one file each; status and events are written
// once, in a deferred step, on every exit path.
package controllers

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/kafka"
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
	// KafkaTimeout bounds the Kafka admin calls of one reconcile.
	KafkaTimeout time.Duration
	// StatusSyncPeriod is how often, at most, changing lag figures are written to
	// status when nothing else changed (replicas and conditions are written at
	// once).
	StatusSyncPeriod time.Duration
	// ResyncInterval is how often a pipeline is reconciled with no change, to
	// converge drift of its topics' configs (Kubernetes objects are watched).
	ResyncInterval time.Duration
	// RetryBackoffMax caps the backoff of failed reconciles (an unreachable
	// cluster), so that recovered brokers are noticed within it.
	RetryBackoffMax time.Duration
	// TopicDeletionTimeout bounds how long a deleted pipeline with
	// deletionPolicy Delete waits for an unreachable Kafka before it lets go and
	// reports the topics it left behind: deleting a pipeline (or its namespace)
	// always finishes.
	TopicDeletionTimeout time.Duration
	// MaxConcurrentReconciles: Kafka calls make reconciles wait on the network,
	// so several run at once.
	MaxConcurrentReconciles int
	// KafkaOpts are extra options for the operator's Kafka clients.
	KafkaOpts []kgo.Opt
	// Registry receives the operator's metrics; nil means controller-runtime's.
	Registry prometheus.Registerer

	kafka    *kafka.Pool
	observer *observer
	metrics  *pipelineMetrics
	// applied remembers what this process's last apply of each object
	// returned, so that an apply is skipped only on a cached object that is
	// not older than that apply (applyskip.go).
	applied *appliedMarks
}

// phase is one step of the reconcile; phases run in order and stop at the first
// error.
type phase func(ctx context.Context, s *scope) error

// +kubebuilder:rbac:groups=streaming.sluice.dev,resources=streampipelines,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=streaming.sluice.dev,resources=streampipelines/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=streaming.sluice.dev,resources=streampipelines/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=configmaps;serviceaccounts,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one StreamPipeline's workload in line with its spec.
func (r *StreamPipelineReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	sp := &sluicev1.StreamPipeline{}
	if err := r.Get(ctx, req.NamespacedName, sp); err != nil {
		if apierrors.IsNotFound(err) {
			r.release(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	// Status, metrics and events are reported on every exit path, deletion
	// included.
	s := newScope(sp)
	defer func() {
		var err error
		result, err = r.finish(ctx, s, result, retErr)
		if err != nil && goingAway(ctx, err) {
			log.FromContext(ctx).V(1).Info("reconcile cut short: the pipeline's namespace is being deleted, or the operator is stopping", "err", err.Error())
			result, err = ctrl.Result{}, nil
		}
		retErr = err
	}()
	if !sp.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.reconcileDelete(ctx, s)
	}
	if err := r.reconcileFinalizer(ctx, sp); err != nil {
		return ctrl.Result{}, err
	}

	for _, p := range []phase{
		r.checkWorkerConfig,
		r.reconcileClaims,
		r.reconcileSecrets,
		r.reconcileTopics,
		r.reconcileShareGroup,
		r.reconcileNextGenGroup,
		r.reconcileStartingOffsets,
		r.reconcileRewindHold,
		r.reconcileObservation,
		r.reconcileServiceAccount,
		r.reconcileReplicas,
		r.reconcileWorkerConfig,
		r.reconcileWorkload,
		r.reconcileStaticMembers,
		r.reconcileDisruptionBudget,
	} {
		if err := p(ctx, s); err != nil {
			return ctrl.Result{}, err
		}
	}
	// The resync converges drift nobody asked about: it waits behind other work.
	return ctrl.Result{RequeueAfter: r.ResyncInterval, Priority: &lowPriority}, nil
}

// finish computes the conditions from what the phases saw, patches the status
// once and records the events. A stalled pipeline is not an error for the
// work queue (retrying at once can't help); it is looked at again later.
func (r *StreamPipelineReconciler) finish(ctx context.Context, s *scope, result ctrl.Result, reconcileErr error) (ctrl.Result, error) {
	var stalled *stalledError
	isStalled := errors.As(reconcileErr, &stalled)
	setConditions(s, reconcileErr)
	if s.released {
		defer r.release(pipelineKey(s.sp))
	} else {
		r.metrics.reconciled(s.sp, errorReason(reconcileErr))
	}

	// Most reconciles that the lag polls trigger change a figure or two; the
	// rest change nothing and need no write. A pipeline whose last finalizer
	// this reconcile removed is gone.
	if !s.released && !equality.Semantic.DeepEqual(s.original.Status, s.sp.Status) {
		if err := r.writeStatus(ctx, s.sp); err != nil {
			if !isStalled {
				return result, errors.Join(reconcileErr, err)
			}
			return result, err
		}
	}
	r.recordEvents(s, reconcileErr)

	if isStalled {
		log.FromContext(ctx).Info("pipeline stalled", "reason", stalled.reason, "message", stalled.message)
		return ctrl.Result{RequeueAfter: r.StalledRetryInterval}, nil
	}
	return result, reconcileErr
}

// goingAway tells the failures that are not the reconcile's to report: the
// pipeline's namespace is being deleted (the API server refuses new objects
// there, and the pipeline goes with the namespace), or the operator is
// stopping (its context ended mid-write; the next leader reconciles again).
func goingAway(ctx context.Context, err error) bool {
	return apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) ||
		ctx.Err() != nil && errors.Is(err, context.Canceled)
}

// release lets go of a pipeline that is gone: its share of the Kafka client,
// its lag watch, its observation state and metrics.
func (r *StreamPipelineReconciler) release(key types.NamespacedName) {
	r.kafka.Release(key.String())
	r.observer.forget(key)
}

// errorReason is the reason a failed reconcile is counted under.
func errorReason(err error) string {
	var st *stalledError
	var re *retryError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &st):
		return st.reason
	case errors.As(err, &re):
		return re.reason
	}
	return sluicev1.ReasonApplyFailed
}

// SetupWithManager registers the reconciler: it watches StreamPipelines (spec
// changes only), everything they own, and the wake-ups of the lag observer. The
// Kafka clients close when the manager stops.
func (r *StreamPipelineReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.StalledRetryInterval == 0 {
		r.StalledRetryInterval = 30 * time.Second
	}
	if r.KafkaTimeout == 0 {
		r.KafkaTimeout = 15 * time.Second
	}
	if r.StatusSyncPeriod == 0 {
		r.StatusSyncPeriod = 10 * time.Second
	}
	if r.ResyncInterval == 0 {
		r.ResyncInterval = 5 * time.Minute
	}
	if r.RetryBackoffMax == 0 {
		r.RetryBackoffMax = 30 * time.Second
	}
	if r.TopicDeletionTimeout == 0 {
		r.TopicDeletionTimeout = 2 * time.Minute
	}
	if r.MaxConcurrentReconciles == 0 {
		r.MaxConcurrentReconciles = 32
	}
	if r.Registry == nil {
		r.Registry = ctrlmetrics.Registry
	}
	r.applied = &appliedMarks{}
	r.metrics = newPipelineMetrics(r.Registry, func() int { return r.kafka.Clusters() })
	r.observer = newObserver(r.StatusSyncPeriod, r.metrics)
	r.kafka = kafka.NewPool(r.observer.observe, r.KafkaOpts...)
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &sluicev1.StreamPipeline{}, indexClaims, claimIndexValues); err != nil {
		return err
	}
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		<-ctx.Done()
		r.kafka.Close()
		return nil
	})); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&sluicev1.StreamPipeline{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesRawSource(source.Channel(r.observer.events, &handler.TypedEnqueueRequestForObject[*sluicev1.StreamPipeline]{})).
		WatchesRawSource(source.Channel(r.observer.refreshes, enqueueLowPriority())).
		WithOptions(controller.Options{
			MaxConcurrentReconciles: r.MaxConcurrentReconciles,
			RateLimiter:             workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](100*time.Millisecond, r.RetryBackoffMax),
		}).
		Owns(&appsv1.Deployment{}).
		Owns(&appsv1.StatefulSet{}).
		Owns(&corev1.ConfigMap{}).
		Owns(&corev1.ServiceAccount{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		// Pods belong to ReplicaSets or the StatefulSet; their pipeline is in
		// their label. A pod that crash-loops changes nothing on the workload,
		// but the reason Ready shows does.
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(pipelineOfPod), builder.WithPredicates(podStatusChanged())).
		// A rewind that starts or ends holds or releases the workers.
		Watches(&sluicev1.StreamReplay{}, handler.EnqueueRequestsFromMapFunc(pipelineOfReplay), builder.WithPredicates(replayPhaseChanged())).
		Named("streampipeline").
		Complete(r)
}
