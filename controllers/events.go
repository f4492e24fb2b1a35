package controllers

import (
	"errors"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// recordEvents emits one Event per meaningful change this reconcile made or
// observed. Repeated failures are reported once per new message, not on every
// retry.
func (r *StreamPipelineReconciler) recordEvents(s *scope, reconcileErr error) {
	if r.Recorder == nil {
		return
	}
	sp := s.sp
	var related runtime.Object // a typed nil would not be a nil interface
	if s.workload != nil {
		related = s.workload.object
	}
	normal := func(reason, action, note string, args ...any) {
		r.Recorder.Eventf(sp, related, corev1.EventTypeNormal, reason, action, note, args...)
	}

	r.recordDeletion(s)
	var st *stalledError
	switch {
	case errors.As(reconcileErr, &st):
		if prev := meta.FindStatusCondition(s.original.Status.Conditions, sluicev1.ConditionStalled); prev == nil || prev.Message != st.message {
			r.Recorder.Eventf(sp, nil, corev1.EventTypeWarning, st.reason, "Reconcile", "%s", st.message)
		}
		return
	case reconcileErr != nil:
		r.Recorder.Eventf(sp, nil, corev1.EventTypeWarning, sluicev1.EventReconcileError, "Reconcile", "%s", reconcileErr.Error())
		return
	case !sp.DeletionTimestamp.IsZero():
		return
	}

	if s.startingOffsetsCommitted {
		normal(sluicev1.EventStartingOffsetsCommitted, "Commit",
			"committed the end of every partition of %s for group %s (startFrom Latest): records arriving from now on are consumed, also while no worker runs",
			sp.Spec.Source.Topic, sp.ConsumerGroup())
	}
	if len(s.removedStaticMembers) > 0 {
		normal(sluicev1.EventStaticMembersRemoved, "Remove",
			"removed static members %s from group %s: their pods are gone and won't come back, so their partitions need not wait out the session timeout",
			strings.Join(s.removedStaticMembers, ", "), sp.ConsumerGroup())
	}
	wasSuspended := conditionReason(s.original, sluicev1.ConditionReady) == sluicev1.ReasonSuspended
	wasHeld := conditionReason(s.original, sluicev1.ConditionReady) == sluicev1.ReasonRewinding
	switch {
	case s.workload != nil && s.workload.created && s.replacedWorkload != "":
		normal(sluicev1.EventWorkloadCreated, "Create", "created worker %s %s with %d replicas in place of the %s (consumer.membership %s)",
			s.workload.kind, s.workload.object.GetName(), s.desiredReplicas, s.replacedWorkload, sp.Spec.Consumer.Membership)
	case s.workload != nil && s.workload.created:
		normal(sluicev1.EventWorkloadCreated, "Create", "created worker %s %s with %d replicas", s.workload.kind, s.workload.object.GetName(), s.desiredReplicas)
	case sp.Spec.Suspend && !wasSuspended:
		normal(sluicev1.EventSuspended, "Suspend", "pipeline suspended: workers scaled from %d to 0", ptr.Deref(s.previousReplicas, 0))
	case !sp.Spec.Suspend && wasSuspended:
		normal(sluicev1.EventResumed, "Resume", "pipeline resumed with %d workers", s.desiredReplicas)
	case s.heldBy != "" && !wasHeld && !sp.Spec.Suspend:
		normal(sluicev1.EventSuspended, "Suspend", "workers held at 0 (from %d) while StreamReplay %s rewinds the consumer group", ptr.Deref(s.previousReplicas, 0), s.heldBy)
	case s.heldBy == "" && wasHeld && !sp.Spec.Suspend:
		normal(sluicev1.EventResumed, "Resume", "rewind over: pipeline resumed with %d workers", s.desiredReplicas)
	case s.previousReplicas != nil && *s.previousReplicas != s.desiredReplicas && sp.Status.LastScale != nil:
		ls := sp.Status.LastScale
		normal(sluicev1.EventScaled, "Scale", "scaled workers from %d to %d (%s): %s", ls.From, ls.To, ls.Reason, ls.Message)
	}
	if s.previousConfigHash != "" && s.previousConfigHash != s.configHash {
		normal(sluicev1.EventConfigChanged, "Update", "worker configuration changed (%s → %s): rolling the workers", s.previousConfigHash, s.configHash)
	}
	if meta.IsStatusConditionTrue(sp.Status.Conditions, sluicev1.ConditionReady) &&
		!meta.IsStatusConditionTrue(s.original.Status.Conditions, sluicev1.ConditionReady) {
		normal(sluicev1.EventReady, "Reconcile", "%s", meta.FindStatusCondition(sp.Status.Conditions, sluicev1.ConditionReady).Message)
	}
}

// wasStopped: the pipeline's Ready said it ran no workers on purpose
// (suspended, or held by a rewind).
func wasStopped(sp *sluicev1.StreamPipeline) bool {
	r := conditionReason(sp, sluicev1.ConditionReady)
	return r == sluicev1.ReasonSuspended || r == sluicev1.ReasonRewinding
}

func conditionReason(sp *sluicev1.StreamPipeline, t string) string {
	if c := meta.FindStatusCondition(sp.Status.Conditions, t); c != nil {
		return c.Reason
	}
	return ""
}
