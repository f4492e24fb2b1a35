package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/render"
	"github.com/sluice-dev/sluice/internal/replay"
)

// Reasons and events of a Reprocess.
const (
	ReasonReprocessUnsupported = "ReprocessUnsupported"
	ReasonReprocessJobCreated  = "JobCreated"
	ReasonReprocessFailed      = "JobFailed"
)

// maxReprocessPlanBytes bounds the plan in the Job's environment: Linux
// refuses to start a process with a single environment string over 128 KiB
// (about 1,700 partitions of plan).
const maxReprocessPlanBytes = 120_000

// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch;create;delete
// The Job's owner reference blocks the replay's deletion until the Job is
// gone, which OwnerReferencesPermissionEnforcement checks against this:
// +kubebuilder:rbac:groups=streaming.sluice.dev,resources=streamreplays/finalizers,verbs=update

// reprocess runs a StreamReplay of mode Reprocess in reconcile steps: the
// snapshot (start, shared with Redrive), then a Job of the worker image that
// runs the selection through the pipeline's sink, followed until it completes
// (the counts come from its pod's termination message) or fails. While it
// runs, done and failedAgain come from the counts its pod commits with its
// position.
func (r *StreamReplayReconciler) reprocess(ctx context.Context, sr *sluicev1.StreamReplay, sp *sluicev1.StreamPipeline, plan replayPlan, conn []kgo.Opt) (ctrl.Result, error) {
	if len(sr.Status.Snapshot) == 0 && sr.Status.Phase != sluicev1.ReplayPhaseRunning {
		// Checked before it starts only: a running Job is followed to its end.
		if sp.Semantics() == sluicev1.ExactlyOnce {
			return ctrl.Result{}, r.fail(ctx, sr, ReasonReprocessUnsupported, fmt.Sprintf(
				"spec.mode Reprocess writes the records through the pipeline's idempotency key; pipeline %s is ExactlyOnce (its sink keeps exactly-once with offsets or transactions, not keys): use mode Rewind", sp.Name))
		}
		return r.start(ctx, sr, sp, plan, conn)
	}
	name := render.ReprocessJobName(sr.Name)
	job := &batchv1.Job{}
	err := r.Get(ctx, client.ObjectKey{Namespace: sr.Namespace, Name: name}, job)
	if apierrors.IsNotFound(err) {
		return r.createReprocessJob(ctx, sr, sp, plan, name)
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	if !metav1.IsControlledBy(job, sr) {
		// A Job of an earlier replay of the same name, still being deleted.
		return ctrl.Result{RequeueAfter: replayRetryInterval}, r.pending(ctx, sr, ReasonReprocessJobCreated,
			fmt.Sprintf("Job %s belongs to another StreamReplay (an earlier one of this name); waiting until it is gone", name))
	}
	switch {
	case jobCondition(job, batchv1.JobComplete):
		return ctrl.Result{}, r.reprocessComplete(ctx, sr, job, conn)
	case jobCondition(job, batchv1.JobFailed):
		return ctrl.Result{}, r.fail(ctx, sr, ReasonReprocessFailed, fmt.Sprintf("Job %s failed: %s%s", name, jobFailure(job), r.lastPodMessage(ctx, job)))
	}
	// Running: show how far it got.
	kctx, adm, done, err := replayAdmin(ctx, conn)
	if err == nil {
		defer done()
		if c, err := replay.ReprocessProgress(kctx, adm, sr.Status.ProgressGroup); err == nil &&
			(c.Done != sr.Status.Done || ptr.Deref(sr.Status.FailedAgain, 0) != c.Failed) {
			if err := r.patchStatus(ctx, client.ObjectKeyFromObject(sr), func(sr *sluicev1.StreamReplay) {
				sr.Status.Done, sr.Status.FailedAgain = c.Done, ptr.To(c.Failed)
			}); err != nil {
				return ctrl.Result{}, err
			}
		}
	}
	return ctrl.Result{RequeueAfter: replayProgressInterval * 5}, nil
}

// encodeReprocessPlan is the plan as the Job's environment carries it; a plan
// too large for an environment variable is an InvalidSelectionError.
func encodeReprocessPlan(p replay.ReprocessPlan) ([]byte, error) {
	data, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	if len(data) > maxReprocessPlanBytes {
		return nil, &replay.InvalidSelectionError{Field: "spec.select.partitions", Message: fmt.Sprintf(
			"the Reprocess plan of %d partitions is %d bytes, more than the %d an environment variable of the Job's container can hold; select fewer partitions (several replays)",
			len(p.Partitions), len(data), maxReprocessPlanBytes)}
	}
	return data, nil
}

// createReprocessJob renders the plan and the Job, and records the Job in
// status.
func (r *StreamReplayReconciler) createReprocessJob(ctx context.Context, sr *sluicev1.StreamReplay, sp *sluicev1.StreamPipeline, plan replayPlan, name string) (ctrl.Result, error) {
	p := replay.ReprocessPlan{
		Replay: sr.Namespace + "/" + sr.Name, Group: sr.Status.ProgressGroup,
		Partitions: snapshotParts(sr.Status.Snapshot), Select: plan.sel, RateLimit: int(sr.RateLimitOr()),
		DeadLetter: sr.Spec.From != sluicev1.ReplayFromDeadLetters,
	}
	data, err := encodeReprocessPlan(p)
	var invalid *replay.InvalidSelectionError
	if errors.As(err, &invalid) {
		return ctrl.Result{}, r.fail(ctx, sr, ReasonInvalidSelection, err.Error())
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	owner := metav1.OwnerReference{APIVersion: sluicev1.GroupVersion.String(), Kind: "StreamReplay", Name: sr.Name, UID: sr.UID,
		Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}
	job := render.ReprocessJob(sp, render.DeploymentParams{Image: r.WorkerImage, ConfigHash: sp.Status.WorkerConfigHash}, name, data, owner)
	if err := r.Create(ctx, job); err != nil && !apierrors.IsAlreadyExists(err) {
		return ctrl.Result{}, fmt.Errorf("create the reprocess Job %s: %w", name, err)
	}
	if err := r.patchStatus(ctx, client.ObjectKeyFromObject(sr), func(sr *sluicev1.StreamReplay) {
		sr.Status.Job = name
		sr.Status.Message = fmt.Sprintf("reprocessing %s through the sink of pipeline %s (Job %s)", strings.Join(plan.topics, ", "), sp.Name, name)
	}); err != nil {
		return ctrl.Result{}, err
	}
	r.event(sr, corev1.EventTypeNormal, ReasonReprocessJobCreated, "Job %s runs %d partitions of %v through the sink of pipeline %s", name, len(p.Partitions), plan.topics, sp.Name)
	return ctrl.Result{RequeueAfter: replayProgressInterval * 5}, nil
}

// reprocessComplete records the Job's result: its pod's termination message,
// or, when no pod is left to read it from, the counts committed with the
// position (the same numbers: the last batch is committed before the pod
// writes its result).
func (r *StreamReplayReconciler) reprocessComplete(ctx context.Context, sr *sluicev1.StreamReplay, job *batchv1.Job, conn []kgo.Opt) error {
	res, ok := r.jobResult(ctx, job)
	if !ok {
		kctx, adm, done, err := replayAdmin(ctx, conn)
		if err != nil {
			return err
		}
		defer done()
		if res, err = replay.ReprocessProgress(kctx, adm, sr.Status.ProgressGroup); err != nil {
			return err
		}
	}
	now := metav1.Now()
	st := &sr.Status
	st.Phase = sluicev1.ReplayPhaseComplete
	st.CompletionTime = &now
	st.Done, st.FailedAgain = res.Done, ptr.To(res.Failed)
	st.Message = fmt.Sprintf("reprocessed %d records through the sink (Job %s); %d failed again", res.Done, job.Name, res.Failed)
	setReplayConditions(sr, ReasonReplayComplete, st.Message, true)
	if err := r.Status().Update(ctx, sr); err != nil {
		return err
	}
	r.event(sr, corev1.EventTypeNormal, ReasonReplayComplete, "%s", st.Message)
	r.deleteGroup(ctx, conn, st.ProgressGroup)
	return nil
}

// jobPods are the pods of a Job, newest first.
func (r *StreamReplayReconciler) jobPods(ctx context.Context, job *batchv1.Job) []corev1.Pod {
	pods := &corev1.PodList{}
	if err := r.List(ctx, pods, client.InNamespace(job.Namespace), client.MatchingLabels{batchv1.JobNameLabel: job.Name}); err != nil {
		logf.FromContext(ctx).Info("could not list the Job's pods", "job", job.Name, "err", err.Error())
		return nil
	}
	slices.SortFunc(pods.Items, func(a, b corev1.Pod) int { return b.CreationTimestamp.Compare(a.CreationTimestamp.Time) })
	return pods.Items
}

// jobResult is the result a succeeded pod of the Job wrote.
func (r *StreamReplayReconciler) jobResult(ctx context.Context, job *batchv1.Job) (replay.ReprocessCounts, bool) {
	for _, p := range r.jobPods(ctx, job) {
		for _, cs := range p.Status.ContainerStatuses {
			t := cs.State.Terminated
			if cs.Name != render.ContainerName || t == nil || t.ExitCode != 0 {
				continue
			}
			var res replay.ReprocessCounts
			if err := json.Unmarshal([]byte(t.Message), &res); err == nil {
				return res, true
			}
		}
	}
	return replay.ReprocessCounts{}, false
}

// lastPodMessage is the termination message (or reason) of the Job's newest
// failed pod, for the replay's Failed message.
func (r *StreamReplayReconciler) lastPodMessage(ctx context.Context, job *batchv1.Job) string {
	for _, p := range r.jobPods(ctx, job) {
		for _, cs := range p.Status.ContainerStatuses {
			if t := cs.State.Terminated; t != nil && t.ExitCode != 0 {
				msg := strings.TrimSpace(t.Message)
				if msg == "" {
					msg = t.Reason
				}
				if len(msg) > 512 {
					msg = msg[len(msg)-512:]
				}
				return fmt.Sprintf("; its last pod %s exited with %d: %s", p.Name, t.ExitCode, msg)
			}
		}
	}
	return ""
}

func jobCondition(job *batchv1.Job, t batchv1.JobConditionType) bool {
	for _, c := range job.Status.Conditions {
		if c.Type == t && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func jobFailure(job *batchv1.Job) string {
	for _, c := range job.Status.Conditions {
		if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
			return strings.TrimSpace(c.Reason + " " + c.Message)
		}
	}
	return "no reason given"
}
