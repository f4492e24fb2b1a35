package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/render"
	"github.com/sluice-dev/sluice/internal/replay"
	"github.com/sluice-dev/sluice/worker/sink"
)

// Reasons and events of a rewind.
const (
	ReasonRewound           = "Rewound"
	ReasonWaitingForRewind  = "WaitingForRewind"
	rewindStopCheckInterval = 2 * time.Second
)

// A rewind runs in steps, each one a reconcile that can be repeated after a
// crash or an operator restart:
//
//  1. Running without a snapshot: the pipeline controller holds the workers at
//     zero (rewindHolding); the replay waits until no worker pod is left and
//     the consumer group has no members.
//  2. Then it fixes the snapshot: the point to go back to per partition and the
//     group's position before the rewind (Committed), stored in status before
//     anything moves. From here on the stored values decide, so repeating a
//     step sets the same offsets.
//  3. It sets the offsets (the database's first for ExactlyOnce with the
//     postgres sink, then Kafka's) and records Complete, which releases the
//     workers.
func (r *StreamReplayReconciler) rewind(ctx context.Context, sr *sluicev1.StreamReplay, s *scope, plan replayPlan, conn []kgo.Opt) (ctrl.Result, error) {
	if sr.Status.Phase != sluicev1.ReplayPhaseRunning && !sr.Spec.DryRun {
		return r.startRewind(ctx, sr)
	}
	kctx, adm, done, err := replayAdmin(ctx, conn)
	if err != nil {
		return ctrl.Result{}, r.fail(ctx, sr, ReasonReplayKafkaError, err.Error())
	}
	defer done()
	pos := rewindPosition{sp: s.sp, secrets: s.secrets, adm: adm}
	if len(sr.Status.Snapshot) == 0 {
		if !sr.Spec.DryRun {
			if waiting, err := r.workersRunning(kctx, s.sp, adm); err != nil || waiting != "" {
				if err != nil {
					return ctrl.Result{RequeueAfter: replayRetryInterval}, r.runningMessage(ctx, sr, "waiting for the workers to stop: "+err.Error())
				}
				return ctrl.Result{RequeueAfter: rewindStopCheckInterval}, r.runningMessage(ctx, sr, "holding the pipeline's workers at 0 until its consumer group is empty: "+waiting)
			}
		}
		return r.snapshotRewind(ctx, kctx, sr, plan, pos)
	}
	moves, kept := replay.RewindMoves(snapshotParts(sr.Status.Snapshot), committedOfSnapshot(sr.Status.Snapshot))
	if err := pos.set(kctx, moves); err != nil {
		return ctrl.Result{RequeueAfter: replayRetryInterval}, r.runningMessage(ctx, sr, err.Error()+" (retrying; the workers stay stopped)")
	}
	var again int64
	for _, m := range moves {
		again += m.Again
	}
	now := metav1.Now()
	st := &sr.Status
	st.Phase, st.CompletionTime, st.Done = sluicev1.ReplayPhaseComplete, &now, again
	st.Message = fmt.Sprintf("rewound group %s on %s: %s; the workers resume there and read %d records again", s.sp.ConsumerGroup(),
		s.sp.Spec.Source.Topic, describeMoves(moves, kept), again)
	setReplayConditions(sr, ReasonRewound, st.Message, true)
	if err := r.Status().Update(ctx, sr); err != nil {
		return ctrl.Result{}, err // the next reconcile sets the same offsets again
	}
	r.event(sr, corev1.EventTypeNormal, ReasonRewound, "%s", st.Message)
	return ctrl.Result{}, nil
}

// startRewind makes the replay Running, which has the pipeline controller
// hold the workers at zero; one rewind of a pipeline runs at a time.
func (r *StreamReplayReconciler) startRewind(ctx context.Context, sr *sluicev1.StreamReplay) (ctrl.Result, error) {
	list := &sluicev1.StreamReplayList{}
	if err := r.List(ctx, list, client.InNamespace(sr.Namespace)); err != nil {
		return ctrl.Result{}, err
	}
	if other := rewindHolding(list.Items, sr.Spec.Pipeline); other != "" && other != sr.Name {
		return ctrl.Result{RequeueAfter: rewindStopCheckInterval}, r.pending(ctx, sr, ReasonWaitingForRewind,
			fmt.Sprintf("StreamReplay %s is rewinding pipeline %s: this one starts when it ends", other, sr.Spec.Pipeline))
	}
	now := metav1.Now()
	st := &sr.Status
	st.ObservedGeneration, st.StartTime = sr.Generation, &now
	st.Phase = sluicev1.ReplayPhaseRunning
	st.Message = "holding the pipeline's workers at 0 until its consumer group is empty"
	if err := r.Status().Update(ctx, sr); err != nil {
		return ctrl.Result{}, err
	}
	r.event(sr, corev1.EventTypeNormal, ReasonReplayStarted, "rewinding pipeline %s: %s", sr.Spec.Pipeline, st.Message)
	return ctrl.Result{RequeueAfter: replayRequeueNow}, nil
}

// workersRunning says what still runs ("" when nothing does): worker pods
// of the pipeline, or members in its consumer group (a pod that is gone
// may have left a static member, or another consumer uses the group).
func (r *StreamReplayReconciler) workersRunning(ctx context.Context, sp *sluicev1.StreamPipeline, adm *kadm.Client) (string, error) {
	pods := &corev1.PodList{}
	// The workload's pods, not a Reprocess Job's (which carry the pipeline
	// label too); pods that ended hold no membership.
	if err := r.List(ctx, pods, client.InNamespace(sp.Namespace), client.MatchingLabels(render.SelectorLabels(sp))); err != nil {
		return "", err
	}
	var names []string
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			names = append(names, p.Name)
		}
	}
	if n := len(names); n > 0 {
		slices.Sort(names)
		return fmt.Sprintf("%d worker pods left (%s)", n, strings.Join(names, ", ")), nil
	}
	stopped, members, err := replay.GroupStopped(ctx, adm, sp.ConsumerGroup())
	if err != nil || stopped {
		return "", err
	}
	return members, nil
}

// rewindHolding is the StreamReplay that holds pipeline's workers at zero: a
// rewind (not a dry run) that is Running; the first by name when several are
// (startRewind lets only one start). "" when none.
func rewindHolding(replays []sluicev1.StreamReplay, pipeline string) string {
	holder := ""
	for _, sr := range replays {
		if sr.Spec.Pipeline != pipeline || sr.Spec.Mode != sluicev1.ReplayModeRewind || sr.Spec.DryRun ||
			sr.Status.Phase != sluicev1.ReplayPhaseRunning || !sr.DeletionTimestamp.IsZero() {
			continue
		}
		if holder == "" || sr.Name < holder {
			holder = sr.Name
		}
	}
	return holder
}

// snapshotRewind stores where each partition goes and where it was; a dry
// run completes with those counts.
func (r *StreamReplayReconciler) snapshotRewind(ctx, kctx context.Context, sr *sluicev1.StreamReplay, plan replayPlan, pos rewindPosition) (ctrl.Result, error) {
	parts, err := replay.Snapshot(kctx, pos.adm, plan.topics, plan.ranges, plan.sel.Since)
	var invalid *replay.InvalidSelectionError
	if errors.As(err, &invalid) {
		return ctrl.Result{}, r.fail(ctx, sr, ReasonInvalidSelection, err.Error())
	}
	if err != nil {
		return ctrl.Result{RequeueAfter: replayRetryInterval}, r.runningMessage(ctx, sr, err.Error())
	}
	committed, err := pos.committed(kctx)
	if err != nil {
		return ctrl.Result{RequeueAfter: replayRetryInterval}, r.runningMessage(ctx, sr, err.Error())
	}
	moves, kept := replay.RewindMoves(parts, committed)
	st := &sr.Status
	st.Snapshot = partsOfSnapshot(parts, nil)
	again := map[int32]int64{}
	for _, m := range moves {
		again[m.Partition] = m.Again
	}
	var total int64
	for i := range st.Snapshot {
		p := &st.Snapshot[i]
		if c, ok := committed[p.Partition]; ok {
			p.Committed = &c
		}
		n := again[p.Partition]
		p.Matched = &n
		total += n
	}
	st.Matched = &total
	if sr.Spec.DryRun {
		now := metav1.Now()
		st.ObservedGeneration, st.StartTime, st.CompletionTime = sr.Generation, &now, &now
		st.Phase = sluicev1.ReplayPhaseComplete
		st.Message = fmt.Sprintf("dry run: a rewind of group %s on %s would move %s and read %d records again; nothing changed",
			pos.sp.ConsumerGroup(), pos.sp.Spec.Source.Topic, describeMoves(moves, kept), total)
		setReplayConditions(sr, ReasonDryRunComplete, st.Message, true)
		if err := r.Status().Update(ctx, sr); err != nil {
			return ctrl.Result{}, err
		}
		r.event(sr, corev1.EventTypeNormal, ReasonDryRunComplete, "%s", st.Message)
		return ctrl.Result{}, nil
	}
	st.Message = fmt.Sprintf("workers stopped; moving %s", describeMoves(moves, kept))
	if err := r.Status().Update(ctx, sr); err != nil {
		return ctrl.Result{}, err // a conflict: the next reconcile reads the positions again (nothing moved yet)
	}
	return ctrl.Result{RequeueAfter: replayRequeueNow}, nil
}

// runningMessage records why a running rewind waits, when that changed.
func (r *StreamReplayReconciler) runningMessage(ctx context.Context, sr *sluicev1.StreamReplay, msg string) error {
	if sr.Status.Message == msg {
		return nil
	}
	sr.Status.Message = msg
	return r.Status().Update(ctx, sr)
}

// describeMoves says in words what a rewind moves ("3 partitions back (0:
// 120 → 40, …)") and what it leaves.
func describeMoves(moves []replay.Move, kept []int32) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d partitions back", len(moves))
	if len(moves) > 0 {
		b.WriteString(" (")
		for i, m := range moves {
			if i > 0 {
				b.WriteString(", ")
			}
			if i == 8 {
				fmt.Fprintf(&b, "%d more", len(moves)-i)
				break
			}
			from := "none"
			if m.From != nil {
				from = fmt.Sprint(*m.From)
			}
			fmt.Fprintf(&b, "%d: %s → %d", m.Partition, from, m.To)
		}
		b.WriteString(")")
	}
	if len(kept) > 0 {
		fmt.Fprintf(&b, ", %d left where they were (already at or before the point: a rewind never skips records)", len(kept))
	}
	return b.String()
}

func committedOfSnapshot(st []sluicev1.ReplaySnapshotPartition) map[int32]int64 {
	out := map[int32]int64{}
	for _, p := range st {
		if p.Committed != nil {
			out[p.Partition] = *p.Committed
		}
	}
	return out
}

// rewindPosition is where a pipeline's workers resume: the consumer group's
// commits, or for ExactlyOnce delivery with the postgres sink the offsets
// stored in the database (Kafka's commits follow them).
type rewindPosition struct {
	sp      *sluicev1.StreamPipeline
	secrets map[string]*corev1.Secret
	adm     *kadm.Client
}

// database is the postgres sink's DSN and table when the database holds the
// position.
func (p rewindPosition) database() (dsn, table string, ok bool) {
	pg := p.sp.Spec.Sink.Postgres
	if pg == nil || p.sp.Semantics() != sluicev1.ExactlyOnce {
		return "", "", false
	}
	secret := p.secrets[pg.DSNSecretRef.Name]
	if secret == nil {
		return "", "", false
	}
	return string(secret.Data[pg.DSNSecretRef.Key]), pg.Table, true
}

func (p rewindPosition) committed(ctx context.Context) (map[int32]int64, error) {
	topic, group := p.sp.Spec.Source.Topic, p.sp.ConsumerGroup()
	if dsn, table, ok := p.database(); ok {
		stored, exists, err := sink.StoredOffsets(ctx, dsn, table, group, topic)
		if err != nil {
			return nil, err
		}
		if exists {
			// A partition without a stored row starts at its Kafka commit
			// (the worker stores that first): take it from Kafka.
			commits, err := replay.CommittedOffsets(ctx, p.adm, group, topic)
			if err != nil {
				return nil, err
			}
			for part, c := range commits {
				if _, ok := stored[part]; !ok {
					stored[part] = c
				}
			}
			return stored, nil
		}
	}
	return replay.CommittedOffsets(ctx, p.adm, group, topic)
}

func (p rewindPosition) set(ctx context.Context, moves []replay.Move) error {
	topic, group := p.sp.Spec.Source.Topic, p.sp.ConsumerGroup()
	if dsn, table, ok := p.database(); ok && len(moves) > 0 {
		to := make(map[int32]int64, len(moves))
		for _, m := range moves {
			to[m.Partition] = m.To
		}
		if err := sink.RewindStoredOffsets(ctx, dsn, table, group, topic, to); err != nil {
			return err
		}
	}
	return replay.CommitMoves(ctx, p.adm, group, topic, moves)
}
