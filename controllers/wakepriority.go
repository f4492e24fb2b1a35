package controllers

import (
	"context"

	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// lowPriority is the work queue priority of reconciles that only refresh
// what a pipeline shows (new lag figures, the periodic resync): any other
// reconcile that waits in the queue, a new pipeline's or a changed one's,
// goes first. When a thousand pipelines are applied to an operator whose
// running pipelines take new figures every sync period, the queue holds
// hundreds of reconciles at once (BenchmarkFleetLive: 165–400 waiting, every
// worker busy on the API server); the figures can wait, the new pipelines
// should not. An item asked for at both priorities runs at the higher.
var lowPriority = handler.LowPriority

// enqueueLowPriority queues the pipeline of a generic event at lowPriority
// (at the default priority when the queue has none).
func enqueueLowPriority() handler.TypedEventHandler[*sluicev1.StreamPipeline, reconcile.Request] {
	return handler.TypedFuncs[*sluicev1.StreamPipeline, reconcile.Request]{
		GenericFunc: func(_ context.Context, e event.TypedGenericEvent[*sluicev1.StreamPipeline], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			req := reconcile.Request{NamespacedName: client.ObjectKeyFromObject(e.Object)}
			if pq, ok := q.(priorityqueue.PriorityQueue[reconcile.Request]); ok {
				pq.AddWithOpts(priorityqueue.AddOpts{Priority: &lowPriority}, req)
				return
			}
			q.Add(req)
		},
	}
}
