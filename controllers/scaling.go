package controllers

import (
	"context"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/kafka"
	"github.com/sluice-dev/sluice/internal/lag"
	"github.com/sluice-dev/sluice/internal/scaling"
)

// reconcileObservation registers the pipeline's lag watch on its cluster and
// takes the latest observation: the lag, rates and dead-letter depth for the
// status, the lag conditions, and the scaling decision the Deployment phase
// applies.
func (r *StreamPipelineReconciler) reconcileObservation(_ context.Context, s *scope) error {
	sp := s.sp
	key := pipelineKey(sp)
	params := observeParamsOf(sp, s.stopped())
	r.observer.register(key, params)
	s.cluster.Watch(key.String(), kafka.Watch{
		Group:           sp.ConsumerGroup(),
		Topic:           sp.Spec.Source.Topic,
		DeadLetterTopic: sp.DeadLetterTopic(),
		Share:           sp.Share(),
		NextGen:         sp.NextGenGroup(),
		Interval:        sluicev1.DurationOr(sp.Spec.Scaling.PollInterval, sluicev1.DefaultPollInterval),
	})

	view, decision := r.observer.take(key, time.Now())
	s.scaleDecision = decision
	sp.Status.Lag = lagStatus(view)
	sp.Status.Rates = rateStatus(view)
	sp.Status.DeadLetter = &sluicev1.DeadLetterStatus{Topic: sp.DeadLetterTopic()}
	if view != nil && view.DeadLetters != nil {
		sp.Status.DeadLetter.Records = view.DeadLetters
	}
	for _, c := range lagConditions(view, params) {
		setCondition(sp, c.Type, c.Status, c.Reason, c.Message)
	}
	return nil
}

func observeParamsOf(sp *sluicev1.StreamPipeline, stopped bool) observeParams {
	sc := sp.Spec.Scaling
	return observeParams{
		policy: scaling.Policy{
			Min:                    sc.EffectiveMinReplicas(),
			Max:                    sc.EffectiveMaxReplicas(),
			LagThreshold:           sluicev1.Int64Or(sc.LagThreshold, sluicev1.DefaultLagThreshold),
			MaxScaleUpStep:         sluicev1.Int32Or(sc.MaxScaleUpStep, sluicev1.DefaultMaxScaleUpStep),
			ScaleDownStabilization: sluicev1.DurationOr(sc.ScaleDownStabilization, sluicev1.DefaultScaleDownStabilization),
			SharedPartitions:       sp.Share(),
		},
		startFrom:          lag.StartFrom(sp.PositionStartFrom()),
		suspended:          stopped,
		lagCriticalSeconds: int64(sluicev1.Int32Or(sc.LagCriticalSeconds, sluicev1.DefaultLagCriticalSeconds)),
	}
}

// desiredReplicas is the worker count this reconcile applies: 0 when
// stopped (suspended, or held by a rewind); the lag policy's latest decision, kept within the current spec's
// bounds (the spec may have changed since that sample); and, before the first
// lag sample, the current count within the bounds.
func desiredReplicas(s *scope, current *int32) int32 {
	sp := s.sp
	if s.stopped() || s.scaleDecision == nil {
		return replicasWithoutLag(sp, s.stopped(), current)
	}
	return observeParamsOf(sp, false).policy.Within(s.scaleDecision.Desired, ptr.Deref(sp.Status.Partitions, 0))
}

// recordScale writes status.lastScale when this reconcile changed the count.
func recordScale(s *scope) {
	prev := s.previousReplicas
	if prev == nil || *prev == s.desiredReplicas {
		return
	}
	reason, msg := "Bounds", "scaled to fit the scaling bounds"
	switch {
	case s.sp.Spec.Suspend:
		reason, msg = sluicev1.ReasonSuspended, "pipeline suspended"
	case s.heldBy != "":
		reason, msg = sluicev1.ReasonRewinding, "held at 0 while StreamReplay "+s.heldBy+" rewinds the consumer group"
	case wasStopped(s.original):
		reason, msg = sluicev1.ReasonResumed, "pipeline resumed"
	case s.scaleDecision != nil && s.scaleDecision.Desired == s.desiredReplicas:
		reason, msg = s.scaleDecision.Reason, s.scaleDecision.Message
	}
	s.sp.Status.LastScale = &sluicev1.ScaleStatus{
		Time: metav1.Now(), From: *prev, To: s.desiredReplicas, Reason: reason, Message: msg,
	}
}
