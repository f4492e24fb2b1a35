package controllers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/replay"
)

// Reasons and events of a StreamReplay.
const (
	ReasonReplayStarted     = "Started"
	ReasonReplayComplete    = "Complete"
	ReasonDryRunComplete    = "DryRunComplete"
	ReasonInvalidSelection  = "InvalidSelection"
	ReasonPipelineNotFound  = "PipelineNotFound"
	ReasonReplayKafkaError  = "KafkaError"
	replayProgressInterval  = 2 * time.Second
	replayRetryInterval     = 5 * time.Second
	replayWaitInterval      = 30 * time.Second
	replayKafkaCallsTimeout = 2 * time.Minute
	// failedAgainGrace is how long after its retry backoffs a redriven copy
	// may take to come back to the DLQ (lag, processing, the breaker).
	failedAgainGrace           = 5 * time.Minute
	defaultFailedAgainInterval = 30 * time.Second
	// replayRequeueNow: the next step right away (the predicate ignores the
	// object's own metadata and status writes).
	replayRequeueNow = 50 * time.Millisecond
)

// StreamReplayReconciler runs StreamReplays: it fixes each one's snapshot
// (stored in status before the first copy), counts a dry run, and runs a
// redrive in a goroutine of the leader until it completes; a restarted
// operator resumes it from the position committed with its copies. A rewind
// runs in reconcile steps instead (replayrewind.go).
type StreamReplayReconciler struct {
	client.Client
	// APIReader reads the pipeline's Secrets uncached, as the pipeline
	// controller does.
	APIReader client.Reader
	Recorder  events.EventRecorder
	// KafkaOpts are extra options for the replay's Kafka clients.
	KafkaOpts []kgo.Opt
	// FailedAgainInterval is how often a completed redrive's copies are
	// counted back in the DLQ (default 30 s).
	FailedAgainInterval time.Duration
	// WorkerImage is the image of a Reprocess Job when the pipeline doesn't
	// set spec.image (the pipeline controller's).
	WorkerImage string

	// completed wakes the reconcile of a replay whose run recorded Complete
	// (the predicate ignores status writes).
	completed chan event.TypedGenericEvent[*sluicev1.StreamReplay]

	runs *replayRuns
	// lastProgress throttles progress writes per replay.
	mu           sync.Mutex
	lastProgress map[types.NamespacedName]time.Time
	// conns and groups of the running replays, to delete the group at the end.
	conns  map[types.NamespacedName][]kgo.Opt
	groups map[types.NamespacedName]string
}

// +kubebuilder:rbac:groups=streaming.sluice.dev,resources=streamreplays,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=streaming.sluice.dev,resources=streamreplays/status,verbs=get;update;patch

// Reconcile moves a StreamReplay through Pending → Running → Complete or
// Failed.
func (r *StreamReplayReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	sr := &sluicev1.StreamReplay{}
	if err := r.Get(ctx, req.NamespacedName, sr); err != nil {
		if apierrors.IsNotFound(err) {
			r.runs.stop(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !sr.DeletionTimestamp.IsZero() {
		r.runs.stop(req.NamespacedName)
		return ctrl.Result{}, nil
	}
	switch sr.Status.Phase {
	case sluicev1.ReplayPhaseFailed:
		return ctrl.Result{}, nil
	case sluicev1.ReplayPhaseComplete:
		return r.watchFailedAgain(ctx, sr)
	}
	sp := &sluicev1.StreamPipeline{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: sr.Namespace, Name: sr.Spec.Pipeline}, sp); err != nil {
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
		return ctrl.Result{RequeueAfter: replayWaitInterval}, r.pending(ctx, sr, ReasonPipelineNotFound,
			fmt.Sprintf("StreamPipeline %s/%s not found (spec.pipeline)", sr.Namespace, sr.Spec.Pipeline))
	}
	// Owned by its pipeline: deleting the pipeline deletes its replays.
	if !ownedBy(sr, sp) {
		if err := controllerutil.SetOwnerReference(sp, sr, r.Scheme()); err != nil {
			return ctrl.Result{}, err
		}
		// Requeue: the predicate ignores this metadata-only update.
		return ctrl.Result{RequeueAfter: replayRequeueNow}, r.Update(ctx, sr)
	}
	plan, err := planReplay(sr, sp)
	if err != nil {
		return ctrl.Result{}, r.fail(ctx, sr, ReasonInvalidSelection, err.Error())
	}
	s := newScope(sp)
	if err := readSecrets(ctx, r.APIReader, s); err != nil {
		var st *stalledError
		if errors.As(err, &st) {
			return ctrl.Result{RequeueAfter: replayWaitInterval}, r.pending(ctx, sr, st.reason, st.message)
		}
		return ctrl.Result{}, err
	}
	conn, err := kafkaConn(s).Opts()
	if err != nil {
		return ctrl.Result{}, r.fail(ctx, sr, ReasonReplayKafkaError, "pipeline's Kafka connection: "+err.Error())
	}
	conn = append(conn, r.KafkaOpts...)
	switch sr.Spec.Mode {
	case sluicev1.ReplayModeRewind:
		return r.rewind(ctx, sr, s, plan, conn)
	case sluicev1.ReplayModeReprocess:
		return r.reprocess(ctx, sr, sp, plan, conn)
	}

	if len(sr.Status.Snapshot) == 0 && sr.Status.Phase != sluicev1.ReplayPhaseRunning {
		return r.start(ctx, sr, sp, plan, conn)
	}
	if !r.runs.ensure(req.NamespacedName, func(runCtx context.Context) { r.redrive(runCtx, req.NamespacedName, plan, conn, sr.RateLimitOr()) }) {
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	// Looked at again while Running: a run that ended without recording its
	// end (its status write failed) is started again, and resumes at the end.
	return ctrl.Result{RequeueAfter: replayWaitInterval}, nil
}

func ownedBy(sr *sluicev1.StreamReplay, sp *sluicev1.StreamPipeline) bool {
	for _, o := range sr.OwnerReferences {
		if o.UID == sp.UID {
			return true
		}
	}
	return false
}

// start takes the snapshot, counts a dry run or a limit, provisions the
// parked topics and records the snapshot in status, which makes the replay
// Running: from then on it reads exactly that snapshot, whatever restarts.
func (r *StreamReplayReconciler) start(ctx context.Context, sr *sluicev1.StreamReplay, sp *sluicev1.StreamPipeline, plan replayPlan, conn []kgo.Opt) (ctrl.Result, error) {
	kctx, adm, done, err := replayAdmin(ctx, conn)
	if err != nil {
		return ctrl.Result{}, r.fail(ctx, sr, ReasonReplayKafkaError, err.Error())
	}
	defer done()
	parts, err := replay.Snapshot(kctx, adm, plan.topics, plan.ranges, plan.sel.Since)
	var invalid *replay.InvalidSelectionError
	if errors.As(err, &invalid) {
		return ctrl.Result{}, r.fail(ctx, sr, ReasonInvalidSelection, err.Error())
	}
	if err != nil {
		return ctrl.Result{RequeueAfter: replayRetryInterval}, r.pending(ctx, sr, ReasonReplayKafkaError, err.Error())
	}
	var counts *replay.Counts
	switch {
	case sr.Spec.Select.Limit != nil:
		var c replay.Counts
		parts, c, err = replay.Cut(kctx, conn, parts, plan.sel, *sr.Spec.Select.Limit)
		counts = &c
	case sr.Spec.DryRun:
		var c replay.Counts
		c, err = replay.Count(kctx, conn, parts, plan.sel)
		counts = &c
	}
	if err != nil {
		return ctrl.Result{RequeueAfter: replayRetryInterval}, r.pending(ctx, sr, ReasonReplayKafkaError, "count: "+err.Error())
	}
	now := metav1.Now()
	st := &sr.Status
	st.ObservedGeneration = sr.Generation
	st.StartTime = &now
	st.Target = plan.target
	var matched []int64
	if counts != nil {
		st.Matched = &counts.Matched
		st.MatchedByClass = counts.ByClass
		matched = counts.ByPartition
	}
	st.Snapshot = partsOfSnapshot(parts, matched)
	if sr.Spec.DryRun {
		st.Phase = sluicev1.ReplayPhaseComplete
		st.CompletionTime = &now
		st.Message = fmt.Sprintf("dry run: %d records of %v match (by class %v); nothing copied", counts.Matched, plan.topics, counts.ByClass)
		setReplayConditions(sr, ReasonDryRunComplete, st.Message, true)
		if err := r.Status().Update(ctx, sr); err != nil {
			return ctrl.Result{}, err
		}
		r.event(sr, corev1.EventTypeNormal, ReasonDryRunComplete, st.Message)
		return ctrl.Result{}, nil
	}
	st.Phase = sluicev1.ReplayPhaseRunning
	st.ProgressGroup = plan.group
	if sr.Spec.Mode == sluicev1.ReplayModeReprocess {
		st.Message = fmt.Sprintf("reprocessing %v through the sink of pipeline %s", plan.topics, sp.Name)
	} else {
		if err := ensureParkedTopics(kctx, adm, plan.topics, sp); err != nil {
			return ctrl.Result{RequeueAfter: replayRetryInterval}, r.pending(ctx, sr, ReasonReplayKafkaError, err.Error())
		}
		st.Message = fmt.Sprintf("redriving %v to %s", plan.topics, plan.target)
	}
	if err := r.Status().Update(ctx, sr); err != nil {
		return ctrl.Result{}, err // a conflict: the next reconcile takes a new snapshot
	}
	r.event(sr, corev1.EventTypeNormal, ReasonReplayStarted, "%s: %d partitions of %v", st.Message, len(parts), plan.topics)
	return ctrl.Result{RequeueAfter: replayRequeueNow}, nil
}

// watchFailedAgain keeps status.failedAgain of a completed redrive current
// until its copies had time to fail again through the pipeline's retries
// (the retry backoffs plus failedAgainGrace after completion). The first
// count comes with the reconcile that follows Complete (a Running replay is
// looked at every replayWaitInterval).
func (r *StreamReplayReconciler) watchFailedAgain(ctx context.Context, sr *sluicev1.StreamReplay) (ctrl.Result, error) {
	st := sr.Status
	if sr.Spec.Mode != sluicev1.ReplayModeRedrive || sr.Spec.DryRun || st.StartTime == nil || st.CompletionTime == nil {
		return ctrl.Result{}, nil
	}
	sp := &sluicev1.StreamPipeline{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: sr.Namespace, Name: sr.Spec.Pipeline}, sp); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	until := st.CompletionTime.Add(sp.RetryChainDelay() + failedAgainGrace)
	interval := r.FailedAgainInterval
	if st.FailedAgain != nil && time.Now().After(until.Add(interval)) {
		return ctrl.Result{}, nil // counted after the window: final
	}
	s := newScope(sp)
	if err := readSecrets(ctx, r.APIReader, s); err != nil {
		return ctrl.Result{RequeueAfter: interval}, nil
	}
	conn, err := kafkaConn(s).Opts()
	if err != nil {
		return ctrl.Result{}, nil
	}
	conn = append(conn, r.KafkaOpts...)
	kctx, adm, done, err := replayAdmin(ctx, conn)
	if err != nil {
		return ctrl.Result{}, nil
	}
	defer done()
	n, err := replay.FailedAgain(kctx, conn, adm, sp.DeadLetterTopic(), st.StartTime.Time, sr.Namespace+"/"+sr.Name)
	if err != nil {
		logf.FromContext(ctx).Info("could not count the redrive's copies back in the DLQ; retrying", "err", err.Error())
		return ctrl.Result{RequeueAfter: interval}, nil
	}
	if st.FailedAgain == nil || *st.FailedAgain != n {
		if err := r.patchStatus(ctx, client.ObjectKeyFromObject(sr), func(sr *sluicev1.StreamReplay) { sr.Status.FailedAgain = &n }); err != nil {
			return ctrl.Result{}, err
		}
	}
	if time.Now().After(until) {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{RequeueAfter: min(interval, time.Until(until)+time.Second)}, nil
}

// replayAdmin is an admin client of a replay's cluster for one step's Kafka
// calls, with their context (bounded by replayKafkaCallsTimeout); done
// closes both.
func replayAdmin(ctx context.Context, conn []kgo.Opt) (kctx context.Context, adm *kadm.Client, done func(), err error) {
	cl, err := kgo.NewClient(conn...)
	if err != nil {
		return nil, nil, nil, err
	}
	kctx, cancel := context.WithTimeout(ctx, replayKafkaCallsTimeout)
	return kctx, kadm.NewClient(cl), func() { cancel(); cl.Close() }, nil
}

// ensureParkedTopics creates "<topic>.parked" beside each topic read, with
// its partition count and the pipeline's topic policy.
func ensureParkedTopics(ctx context.Context, adm *kadm.Client, topics []string, sp *sluicev1.StreamPipeline) error {
	details, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		return fmt.Errorf("describe %v: %w", topics, err)
	}
	policy := topicPolicy(sp)
	configs := map[string]*string{}
	for k, v := range policy.Configs {
		configs[k] = kadm.StringPtr(v)
	}
	for _, t := range topics {
		d, ok := details[t]
		if !ok {
			return fmt.Errorf("topic %s does not exist", t)
		}
		if d.Err != nil {
			return fmt.Errorf("describe %s: %w", t, d.Err)
		}
		resp, err := adm.CreateTopic(ctx, int32(len(d.Partitions)), policy.ReplicationFactor, configs, replay.ParkedTopic(t))
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create %s: %w", replay.ParkedTopic(t), err)
		}
	}
	return nil
}

// redrive runs the copy until it completes, retrying on errors (each run
// resumes from the committed position), and records the outcome.
func (r *StreamReplayReconciler) redrive(ctx context.Context, key types.NamespacedName, plan replayPlan, conn []kgo.Opt, rateLimit int32) {
	log := logf.FromContext(ctx).WithValues("streamreplay", key)
	for ctx.Err() == nil {
		sr := &sluicev1.StreamReplay{}
		if err := r.Get(ctx, key, sr); err != nil {
			if apierrors.IsNotFound(err) {
				return
			}
			time.Sleep(time.Second)
			continue
		}
		r.mu.Lock()
		r.conns[key], r.groups[key] = conn, plan.group
		r.mu.Unlock()
		d := &replay.Redrive{Conn: conn, Group: plan.group, TransactionalID: plan.transactionalID,
			Parts: snapshotParts(sr.Status.Snapshot), Select: plan.sel, Target: plan.target, Kind: plan.kind,
			By: key.Namespace + "/" + key.Name, RateLimit: int(rateLimit),
			Progress: func(p replay.Progress) { r.progress(ctx, key, p, nil) }}
		total, err := d.Run(ctx)
		if ctx.Err() != nil {
			return // stopped: deleted, or the operator lost the lease
		}
		if err != nil {
			log.Error(err, "redrive failed; resuming from the committed position")
			r.setMessage(ctx, key, "redrive: "+err.Error()+" (resuming)")
			select {
			case <-ctx.Done():
				return
			case <-time.After(replayRetryInterval):
			}
			continue
		}
		end := &replayEnd{}
		if sr.Spec.Truncate {
			end = r.truncateRedriven(ctx, sr, plan, conn)
		}
		r.progress(ctx, key, total, end)
		return
	}
}

// progress writes done/parked (at most every replayProgressInterval) and, at
// the end (end not nil), Complete.
func (r *StreamReplayReconciler) progress(ctx context.Context, key types.NamespacedName, p replay.Progress, end *replayEnd) {
	complete := end != nil
	r.mu.Lock()
	if !complete && time.Since(r.lastProgress[key]) < replayProgressInterval {
		r.mu.Unlock()
		return
	}
	r.lastProgress[key] = time.Now()
	r.mu.Unlock()
	var message string
	err := r.patchStatus(ctx, key, func(sr *sluicev1.StreamReplay) {
		st := &sr.Status
		st.Done, st.Parked = p.Done, p.Parked
		if complete {
			now := metav1.Now()
			st.Phase = sluicev1.ReplayPhaseComplete
			st.CompletionTime = &now
			st.Message = fmt.Sprintf("copied %d records to %s, parked %d", p.Done, st.Target, p.Parked) + end.record(sr)
			setReplayConditions(sr, ReasonReplayComplete, st.Message, true)
			message = st.Message
		}
	})
	if err != nil {
		logf.FromContext(ctx).Error(err, "write replay progress", "streamreplay", key)
		return
	}
	if complete {
		// The reconcile the completed event wakes reads the cache: wait until
		// the cache has Complete, or it would take the replay for running
		// and look again only after replayWaitInterval.
		sr := &sluicev1.StreamReplay{}
		for range 100 {
			if r.Get(ctx, key, sr) == nil && sr.Status.Phase == sluicev1.ReplayPhaseComplete {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if sr.Status.Phase == sluicev1.ReplayPhaseComplete {
			r.event(sr, corev1.EventTypeNormal, ReasonReplayComplete, "%s", message)
			if end.truncateErr != nil {
				r.event(sr, corev1.EventTypeWarning, ReasonTruncateFailed, "could not delete the redriven dead letters (spec.truncate): %v", end.truncateErr)
			}
			select { // start counting what fails again; else the next look does
			case r.completed <- event.TypedGenericEvent[*sluicev1.StreamReplay]{Object: sr}:
			default:
			}
		}
		r.deleteProgressGroup(ctx, key)
	}
}

// deleteProgressGroup removes the replay's consumer group once Complete is
// recorded (never before: a run restarted after the last copy but before
// the status write must find its position, or it would copy everything
// again). Best effort: an empty group expires with the broker's offset
// retention anyway.
func (r *StreamReplayReconciler) deleteProgressGroup(ctx context.Context, key types.NamespacedName) {
	r.mu.Lock()
	conn, group := r.conns[key], r.groups[key]
	delete(r.conns, key)
	delete(r.groups, key)
	r.mu.Unlock()
	r.deleteGroup(ctx, conn, group)
}

// deleteGroup deletes a replay's consumer group, best effort (an empty
// group expires with the broker's offset retention anyway).
func (r *StreamReplayReconciler) deleteGroup(ctx context.Context, conn []kgo.Opt, group string) {
	if conn == nil || group == "" {
		return
	}
	cl, err := kgo.NewClient(conn...)
	if err != nil {
		return
	}
	defer cl.Close()
	kctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(cl).DeleteGroup(kctx, group); err != nil {
		logf.FromContext(ctx).Info("could not delete the replay's consumer group; it expires with the broker's offset retention", "group", group, "err", err.Error())
	}
}

func (r *StreamReplayReconciler) setMessage(ctx context.Context, key types.NamespacedName, msg string) {
	_ = r.patchStatus(ctx, key, func(sr *sluicev1.StreamReplay) { sr.Status.Message = msg })
}

// patchStatus applies mutate to the current status with a merge patch (no
// resourceVersion: the run is the only writer while the replay is Running),
// retrying on transient errors.
func (r *StreamReplayReconciler) patchStatus(ctx context.Context, key types.NamespacedName, mutate func(*sluicev1.StreamReplay)) error {
	var err error
	for range 5 {
		sr := &sluicev1.StreamReplay{}
		if err = r.Get(ctx, key, sr); err != nil {
			return client.IgnoreNotFound(err)
		}
		before := sr.DeepCopy()
		mutate(sr)
		if err = r.Status().Patch(ctx, sr, client.MergeFrom(before)); err == nil || apierrors.IsNotFound(err) {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return err
}

// pending records why the replay waits.
func (r *StreamReplayReconciler) pending(ctx context.Context, sr *sluicev1.StreamReplay, reason, message string) error {
	if sr.Status.Phase == sluicev1.ReplayPhasePending && sr.Status.Message == message {
		return nil
	}
	sr.Status.Phase = sluicev1.ReplayPhasePending
	sr.Status.Message = message
	r.event(sr, corev1.EventTypeWarning, reason, "%s", message)
	return r.Status().Update(ctx, sr)
}

// fail ends the replay: it can't run as written.
func (r *StreamReplayReconciler) fail(ctx context.Context, sr *sluicev1.StreamReplay, reason, message string) error {
	now := metav1.Now()
	sr.Status.Phase = sluicev1.ReplayPhaseFailed
	sr.Status.CompletionTime = &now
	sr.Status.Message = message
	setReplayConditions(sr, reason, message, false)
	r.event(sr, corev1.EventTypeWarning, reason, "%s", message)
	return r.Status().Update(ctx, sr)
}

// setReplayConditions sets Complete and Failed for a finished replay.
func setReplayConditions(sr *sluicev1.StreamReplay, reason, message string, complete bool) {
	status := func(b bool) metav1.ConditionStatus {
		if b {
			return metav1.ConditionTrue
		}
		return metav1.ConditionFalse
	}
	meta.SetStatusCondition(&sr.Status.Conditions, metav1.Condition{Type: sluicev1.ConditionComplete, Status: status(complete),
		Reason: reason, Message: message, ObservedGeneration: sr.Generation})
	meta.SetStatusCondition(&sr.Status.Conditions, metav1.Condition{Type: sluicev1.ConditionFailed, Status: status(!complete),
		Reason: reason, Message: message, ObservedGeneration: sr.Generation})
}

func (r *StreamReplayReconciler) event(sr *sluicev1.StreamReplay, kind, reason, note string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(sr, nil, kind, reason, "Replay", note, args...)
	}
}

// SetupWithManager registers the reconciler and its runs.
func (r *StreamReplayReconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.runs = newReplayRuns()
	r.lastProgress = map[types.NamespacedName]time.Time{}
	r.conns = map[types.NamespacedName][]kgo.Opt{}
	r.groups = map[types.NamespacedName]string{}
	r.completed = make(chan event.TypedGenericEvent[*sluicev1.StreamReplay], 64)
	if r.FailedAgainInterval == 0 {
		r.FailedAgainInterval = defaultFailedAgainInterval
	}
	if err := mgr.Add(r.runs); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		// Spec changes only (the spec is immutable: creation), not the
		// run's own progress writes; start requeues to begin the run.
		For(&sluicev1.StreamReplay{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesRawSource(source.Channel(r.completed, &handler.TypedEnqueueRequestForObject[*sluicev1.StreamReplay]{})).
		// A Reprocess Job's progress (its conditions) wakes its replay.
		Owns(&batchv1.Job{}).
		Named("streamreplay").
		Complete(r)
}
