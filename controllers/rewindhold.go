package controllers

import (
	"context"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// reconcileRewindHold finds the StreamReplay, if any, that is rewinding the
// pipeline's consumer group: while it runs, the workers are held at zero as if
// the pipeline were suspended (nothing may commit over the offsets it sets),
// without touching the pipeline's spec, which its owner (or GitOps) keeps.
// The hold ends when the rewind is Complete, Failed or deleted.
func (r *StreamPipelineReconciler) reconcileRewindHold(ctx context.Context, s *scope) error {
	list := &sluicev1.StreamReplayList{}
	if err := r.List(ctx, list, client.InNamespace(s.sp.Namespace)); err != nil {
		return err
	}
	s.heldBy = rewindHolding(list.Items, s.sp.Name)
	return nil
}

// stopped is whether the pipeline runs no workers: suspended, or held by a
// rewind.
func (s *scope) stopped() bool { return s.sp.Spec.Suspend || s.heldBy != "" }

// pipelineOfReplay maps a StreamReplay to its pipeline.
func pipelineOfReplay(_ context.Context, o client.Object) []reconcile.Request {
	sr, ok := o.(*sluicev1.StreamReplay)
	if !ok {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: sr.Namespace, Name: sr.Spec.Pipeline}}}
}

// replayPhaseChanged passes what can start or end a hold: a phase change
// or a deletion.
func replayPhaseChanged() predicate.Funcs {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, ok1 := e.ObjectOld.(*sluicev1.StreamReplay)
			n, ok2 := e.ObjectNew.(*sluicev1.StreamReplay)
			return ok1 && ok2 && o.Status.Phase != n.Status.Phase
		},
		DeleteFunc: func(event.DeleteEvent) bool { return true },
	}
}
