package controllers

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/log"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/kafka"
)

// reconcileStartingOffsets fixes where a startFrom: Latest pipeline's group
// starts, once, before its first worker runs: the end of every partition is
// committed for a group that has no offsets and no members
// (kafka.CommitStartingOffsets says why). Until then the group's lag would read
// as 0 whatever arrives, so a pipeline with minReplicas 0 would scale to zero
// and never wake, and its first worker would skip what arrived meanwhile.
// A failure stops the reconcile before the Deployment is created or changed.
func (r *StreamPipelineReconciler) reconcileStartingOffsets(ctx context.Context, s *scope) error {
	sp := s.sp
	// A share group starts where its share.auto.offset.reset group config
	// says (reconcileShareGroup sets it); it has no committed offsets.
	if sp.StartFrom() != sluicev1.StartFromLatest || sp.Status.StartingOffsetsCommitted != nil || sp.Share() {
		return nil
	}
	kctx, cancel := context.WithTimeout(ctx, r.KafkaTimeout)
	defer cancel()
	outcome, err := kafka.CommitStartingOffsets(kctx, s.cluster.Admin(), sp.ConsumerGroup(), sp.Spec.Source.Topic)
	if err != nil {
		return retry(sluicev1.ReasonStartingOffsetsFailed, fmt.Errorf("commit the starting offsets of group %s: %w", sp.ConsumerGroup(), err))
	}
	switch outcome {
	case kafka.StartCommitted, kafka.StartAlreadyCommitted:
		now := metav1.Now()
		sp.Status.StartingOffsetsCommitted = &now
		s.startingOffsetsCommitted = outcome == kafka.StartCommitted
	case kafka.StartGroupActive:
		// Members that were started some other way decide where they begin;
		// the group will have offsets once they commit.
		log.FromContext(ctx).Info("consumer group has members but no committed offsets; not committing a start",
			"group", sp.ConsumerGroup())
	}
	return nil
}
