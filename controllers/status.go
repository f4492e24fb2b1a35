package controllers

import (
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// rolloutState is how far the worker workload is from running the current spec.
type rolloutState struct {
	complete bool
	failed   bool
	message  string
}

// evaluateRollout reads a Deployment's or a StatefulSet's status the way
// `kubectl rollout status` does: observed generation, updated, old and
// available replicas, and a Deployment's progress deadline.
func evaluateRollout(w *workload, desired int32) rolloutState {
	if w == nil {
		return rolloutState{message: "worker workload not created yet"}
	}
	st := w.status
	if st.observedGeneration < st.generation {
		return rolloutState{message: fmt.Sprintf("waiting for the %s controller to observe generation %d", w.kind, st.generation)}
	}
	if st.deadlineExceeded != "" {
		return rolloutState{failed: true, message: fmt.Sprintf("worker rollout failed: %s", st.deadlineExceeded)}
	}
	switch {
	case st.updated < desired:
		return rolloutState{message: fmt.Sprintf("%d of %d workers updated", st.updated, desired)}
	case st.replicas > st.updated:
		return rolloutState{message: fmt.Sprintf("%d old workers pending termination", st.replicas-st.updated)}
	case st.available < st.updated:
		return rolloutState{message: fmt.Sprintf("%d of %d updated workers available", st.available, st.updated)}
	case st.replicas > desired:
		// Scaling down: the surplus workers are stopping (finishing their
		// records, committing, leaving the group).
		return rolloutState{complete: true, message: fmt.Sprintf("%d of %d workers available, %d more stopping",
			min(st.available, desired), desired, st.replicas-desired)}
	}
	return rolloutState{complete: true, message: fmt.Sprintf("%d of %d workers available", st.available, desired)}
}

// setConditions writes the kstatus conditions (Ready, Reconciling, Stalled) and
// the observed generation from the outcome of the phases.
func setConditions(s *scope, reconcileErr error) {
	sp := s.sp
	gen := sp.Generation
	set := func(t string, status metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&sp.Status.Conditions, metav1.Condition{
			Type: t, Status: status, Reason: reason, Message: msg, ObservedGeneration: gen,
		})
	}
	sp.Status.ObservedGeneration = gen
	sp.Status.ConsumerGroup = sp.ConsumerGroup()
	if sp.Status.DeadLetter == nil || sp.Status.DeadLetter.Topic != sp.DeadLetterTopic() {
		sp.Status.DeadLetter = &sluicev1.DeadLetterStatus{Topic: sp.DeadLetterTopic()}
	}

	var st *stalledError
	switch {
	case !sp.DeletionTimestamp.IsZero():
		msg := "deleting the pipeline"
		if reconcileErr != nil {
			msg += ": " + reconcileErr.Error()
		}
		set(sluicev1.ConditionReady, metav1.ConditionFalse, sluicev1.ReasonDeleting, msg)
		set(sluicev1.ConditionReconciling, metav1.ConditionTrue, sluicev1.ReasonDeleting, msg)
		set(sluicev1.ConditionStalled, metav1.ConditionFalse, sluicev1.ReasonDeleting, msg)
		return
	case errors.As(reconcileErr, &st):
		set(sluicev1.ConditionReady, metav1.ConditionFalse, st.reason, st.message)
		set(sluicev1.ConditionStalled, metav1.ConditionTrue, st.reason, st.message)
		set(sluicev1.ConditionReconciling, metav1.ConditionFalse, st.reason, "waiting for a change to the pipeline or what it references")
		return
	case reconcileErr != nil:
		reason := sluicev1.ReasonApplyFailed
		var re *retryError
		if errors.As(reconcileErr, &re) {
			reason = re.reason
		}
		set(sluicev1.ConditionReady, metav1.ConditionFalse, reason, reconcileErr.Error())
		set(sluicev1.ConditionReconciling, metav1.ConditionTrue, sluicev1.ReasonProgressing, "retrying after error: "+reconcileErr.Error())
		set(sluicev1.ConditionStalled, metav1.ConditionFalse, sluicev1.ReasonProgressing, "retrying")
		return
	}

	ro := evaluateRollout(s.workload, s.desiredReplicas)
	if !ro.complete && s.podProblems != "" {
		ro.message += ": " + s.podProblems
	}
	switch {
	case ro.failed:
		set(sluicev1.ConditionReady, metav1.ConditionFalse, sluicev1.ReasonRolloutFailed, ro.message)
		set(sluicev1.ConditionStalled, metav1.ConditionTrue, sluicev1.ReasonRolloutFailed, ro.message)
		set(sluicev1.ConditionReconciling, metav1.ConditionFalse, sluicev1.ReasonRolloutFailed, "the worker rollout exceeded its progress deadline")
	case sp.Spec.Suspend:
		msg := "pipeline is suspended: workers scaled to 0, consumer group offsets kept"
		if !ro.complete {
			msg = "pipeline is suspended: stopping workers (" + ro.message + ")"
		}
		set(sluicev1.ConditionReady, metav1.ConditionFalse, sluicev1.ReasonSuspended, msg)
		set(sluicev1.ConditionReconciling, metav1.ConditionFalse, sluicev1.ReasonSuspended, msg)
		set(sluicev1.ConditionStalled, metav1.ConditionFalse, sluicev1.ReasonSuspended, msg)
	case s.heldBy != "":
		// Reconciling: the hold ends by itself when the rewind completes.
		msg := "StreamReplay " + s.heldBy + " is rewinding the consumer group: workers held at 0 until it has set the offsets"
		if !ro.complete {
			msg = "StreamReplay " + s.heldBy + " is rewinding the consumer group: stopping workers (" + ro.message + ")"
		}
		set(sluicev1.ConditionReady, metav1.ConditionFalse, sluicev1.ReasonRewinding, msg)
		set(sluicev1.ConditionReconciling, metav1.ConditionTrue, sluicev1.ReasonRewinding, msg)
		set(sluicev1.ConditionStalled, metav1.ConditionFalse, sluicev1.ReasonRewinding, msg)
	case !ro.complete:
		set(sluicev1.ConditionReady, metav1.ConditionFalse, sluicev1.ReasonRollingOut, ro.message)
		set(sluicev1.ConditionReconciling, metav1.ConditionTrue, sluicev1.ReasonRollingOut, ro.message)
		set(sluicev1.ConditionStalled, metav1.ConditionFalse, sluicev1.ReasonRollingOut, ro.message)
	default:
		msg := fmt.Sprintf("%s, running worker config %s", ro.message, s.configHash)
		set(sluicev1.ConditionReady, metav1.ConditionTrue, sluicev1.ReasonSucceeded, msg)
		set(sluicev1.ConditionReconciling, metav1.ConditionFalse, sluicev1.ReasonSucceeded, "workers run the current spec")
		set(sluicev1.ConditionStalled, metav1.ConditionFalse, sluicev1.ReasonSucceeded, "workers run the current spec")
	}
}
