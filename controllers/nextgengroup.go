package controllers

import (
	"context"
	"errors"
	"fmt"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/kafka"
)

// reconcileNextGenGroup, for a consumer.groupProtocol Consumer pipeline,
// checks that the cluster runs KIP-848 consumer groups and sets the group's
// session timeout and heartbeat interval from the spec where it sets them
// (with KIP-848 they are the group's configs, not the member's; unset, the
// broker's defaults apply), whenever the topics are provisioned, so a config
// changed by hand is put back. A cluster without KIP-848 stalls the
// pipeline: its workers would fall back to the classic protocol with the
// eager sticky balancer, which is not what was asked for.
func (r *StreamPipelineReconciler) reconcileNextGenGroup(ctx context.Context, s *scope) error {
	sp := s.sp
	settings := nextGenGroupSettings(sp)
	return r.reconcileGroupConfigs(ctx, s, groupConfigs{
		applies: sp.NextGenGroup(), condition: sluicev1.ConditionConsumerGroupReady, configured: sluicev1.ReasonConsumerGroupConfigured,
		kind: "KIP-848 consumer group", check: kafka.CheckNextGenGroups, configs: settings.Configs(), describe: describeNextGenSettings(settings),
		classify: func(err error) error { return classifyNextGenGroupError(sp, err) }, failed: sluicev1.ReasonConsumerGroupConfigFailed,
	})
}

// nextGenGroupSettings are the group configs the spec asks for: only what the
// user set (Sluice's defaults for the classic protocol are below KIP-848's
// default broker minimums, 45 s and 5 s).
func nextGenGroupSettings(sp *sluicev1.StreamPipeline) kafka.NextGenGroupSettings {
	var out kafka.NextGenGroupSettings
	if d := sp.Spec.Consumer.SessionTimeout; d != nil {
		out.SessionTimeout = d.Duration
	}
	if d := sp.Spec.Consumer.HeartbeatInterval; d != nil {
		out.HeartbeatInterval = d.Duration
	}
	return out
}

func describeNextGenSettings(s kafka.NextGenGroupSettings) string {
	describe := func(d fmt.Stringer, set bool) string {
		if !set {
			return "the broker's default"
		}
		return d.String()
	}
	return fmt.Sprintf("session timeout %s, heartbeat interval %s",
		describe(s.SessionTimeout, s.SessionTimeout > 0), describe(s.HeartbeatInterval, s.HeartbeatInterval > 0))
}

// classifyNextGenGroupError shows the failures of its kind of group; nil for the
// others (classifyGroupConfigError).
func classifyNextGenGroupError(sp *sluicev1.StreamPipeline, err error) error {
	switch {
	case errors.Is(err, kafka.ErrNextGenGroupsUnsupported):
		return stalled(sluicev1.ReasonConsumerGroupsUnsupported,
			"spec.consumer.groupProtocol Consumer: %v; use groupProtocol Classic on this cluster", err)
	case kafka.Classify(err) == kafka.ProblemInvalidConfig:
		return stalled(sluicev1.ReasonInvalidConsumerGroupConfig,
			"the cluster refused the group configs (%v): with groupProtocol Consumer, consumer.sessionTimeout and heartbeatInterval must be within the broker's group.consumer.min/max.session.timeout.ms and heartbeat.interval.ms (Kafka's defaults: 45–60 s and 5–15 s); asked: %s",
			err, describeNextGenSettings(nextGenGroupSettings(sp)))
	}
	return nil
}
