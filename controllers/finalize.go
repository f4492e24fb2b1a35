package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/kafka"
	"github.com/sluice-dev/sluice/internal/replay"
)

// deletionReport is what deleting a pipeline did with its topics, for the
// events and the log.
type deletionReport struct {
	deleted []string
	// kept are topics another pipeline also uses, with that pipeline's name.
	kept map[string]string
	// leftBehind are topics that could not be deleted, and why.
	leftBehind []string
	why        string
}

// reconcileDelete lets a deleted pipeline go. Owned objects are garbage
// collected through their owner references; the retry and dead-letter topics
// (and the "<topic>.parked" topics a redrive put beside them) are kept unless
// deletionPolicy is Delete (read now: a change back to Retain
// made during the deletion is honoured). The source topic is never touched,
// nor a topic another pipeline also uses.
//
// Deleting a pipeline, or its namespace, always finishes: when the topics
// can't be deleted because nothing will change (the credentials' Secret is
// gone, as it is first in a namespace deletion; Kafka denies it), or Kafka
// stays unreachable for TopicDeletionTimeout after the deletion began, the
// finalizer is removed all the same and a Warning event names the topics left
// behind.
func (r *StreamPipelineReconciler) reconcileDelete(ctx context.Context, s *scope) error {
	sp := s.sp
	if !controllerutil.ContainsFinalizer(sp, sluicev1.FinalizerTopics) {
		s.released = true
		return nil
	}
	rep := &deletionReport{kept: map[string]string{}}
	s.deletion = rep
	if sp.Spec.Topics.DeletionPolicy != sluicev1.DeletionPolicyDelete {
		return r.letGo(ctx, s)
	}

	shared, err := r.sharedTopics(ctx, sp)
	if err != nil {
		return err
	}
	var topics []string
	for _, t := range provisionedTopics(sp) {
		if owner, ok := shared[t]; ok {
			rep.kept[t] = owner
			continue
		}
		// A redrive of this topic may have parked records beside it.
		topics = append(topics, t, replay.ParkedTopic(t))
	}
	deleted, err := r.deleteTopics(ctx, s, topics)
	switch {
	case err == nil:
		rep.deleted = deleted
	case errors.Is(err, errCannotDelete) || time.Since(sp.DeletionTimestamp.Time) >= r.TopicDeletionTimeout:
		rep.leftBehind, rep.why = topics, err.Error()
	default:
		return retry(sluicev1.ReasonTopicDeletionFailed, fmt.Errorf("delete topics %s (deletionPolicy Delete; retrying until %s, then they are left behind): %w",
			strings.Join(topics, ", "), sp.DeletionTimestamp.Add(r.TopicDeletionTimeout).UTC().Format(time.RFC3339), err))
	}
	return r.letGo(ctx, s)
}

// errCannotDelete marks deletion failures that waiting can't fix.
var errCannotDelete = errors.New("cannot delete")

// deleteTopics deletes topics with the pipeline's credentials and returns
// those that existed.
func (r *StreamPipelineReconciler) deleteTopics(ctx context.Context, s *scope, topics []string) ([]string, error) {
	if len(topics) == 0 {
		return nil, nil
	}
	if err := r.reconcileSecrets(ctx, s); err != nil {
		var st *stalledError
		if errors.As(err, &st) {
			return nil, fmt.Errorf("%w: %s", errCannotDelete, st.message)
		}
		return nil, err
	}
	cluster, err := r.kafka.Acquire(pipelineKey(s.sp).String(), kafkaConn(s))
	if err != nil {
		return nil, fmt.Errorf("%w: spec.kafka: %w", errCannotDelete, err)
	}
	kctx, cancel := context.WithTimeout(ctx, r.KafkaTimeout)
	defer cancel()
	deleted, err := kafka.DeleteTopics(kctx, cluster.Admin(), topics...)
	if err != nil && kafka.Classify(err) == kafka.ProblemAuth {
		return deleted, fmt.Errorf("%w: Kafka denied it: %w", errCannotDelete, err)
	}
	return deleted, err
}

// letGo removes the topics finalizer.
func (r *StreamPipelineReconciler) letGo(ctx context.Context, s *scope) error {
	patch := client.MergeFrom(s.sp.DeepCopy())
	controllerutil.RemoveFinalizer(s.sp, sluicev1.FinalizerTopics)
	if err := client.IgnoreNotFound(r.Patch(ctx, s.sp, patch)); err != nil {
		return err
	}
	s.released = true
	return nil
}

// recordDeletion reports what deleting the pipeline did with its topics.
func (r *StreamPipelineReconciler) recordDeletion(s *scope) {
	rep, sp := s.deletion, s.sp
	if rep == nil || !s.released {
		return
	}
	if len(rep.deleted) > 0 {
		r.Recorder.Eventf(sp, nil, "Normal", sluicev1.EventTopicsDeleted, "Delete", "deleted topics %s (deletionPolicy Delete)", strings.Join(rep.deleted, ", "))
	}
	for _, t := range slices.Sorted(maps.Keys(rep.kept)) {
		r.Recorder.Eventf(sp, nil, "Normal", sluicev1.EventTopicsKept, "Delete", "kept topic %s: StreamPipeline %s uses it too", t, rep.kept[t])
	}
	if len(rep.leftBehind) > 0 {
		r.Recorder.Eventf(sp, nil, "Warning", sluicev1.EventTopicsLeftBehind, "Delete",
			"could not delete topics %s (deletionPolicy Delete): %s; they remain on the Kafka cluster, delete them by hand", strings.Join(rep.leftBehind, ", "), rep.why)
	}
}
