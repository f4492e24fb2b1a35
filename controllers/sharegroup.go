package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/kafka"
)

// reconcileShareGroup, for a groupType Share pipeline, checks that the cluster
// runs share groups and sets the group's configs from the spec (where a new
// partition starts, the record lock, the delivery count limit): whenever the
// topics are provisioned (a spec change, the resync interval), so a config
// changed by hand is put back. The workers can't consume without them (Kafka
// would start a new group at the latest offset and archive records after its
// own delivery limit, not the pipeline's), so a failure stops the reconcile
// before the Deployment is touched.
func (r *StreamPipelineReconciler) reconcileShareGroup(ctx context.Context, s *scope) error {
	sp := s.sp
	settings := shareGroupSettings(sp)
	return r.reconcileGroupConfigs(ctx, s, groupConfigs{
		applies: sp.Share(), condition: sluicev1.ConditionShareGroupReady, configured: sluicev1.ReasonShareGroupConfigured,
		kind: "share group", check: kafka.CheckShareGroups, configs: settings.Configs(), describe: describeShareSettings(settings),
		classify: func(err error) error { return classifyShareGroupError(sp, err) }, failed: sluicev1.ReasonShareGroupConfigFailed,
	})
}

// shareGroupSettings are the group configs a share pipeline's spec asks for.
// The session timeout and heartbeat interval are the group's too, set only
// when the spec sets them (Sluice's defaults for the classic protocol are
// below Kafka's group.share.min.* bounds, 45 s and 5 s).
func shareGroupSettings(sp *sluicev1.StreamPipeline) kafka.ShareGroupSettings {
	s := kafka.ShareGroupSettings{
		StartFrom:          string(sp.StartFrom()),
		RecordLock:         sp.ShareRecordLockDuration(),
		DeliveryCountLimit: sluicev1.ShareDeliveryCountLimit,
	}
	if d := sp.Spec.Consumer.SessionTimeout; d != nil {
		s.SessionTimeout = d.Duration
	}
	if d := sp.Spec.Consumer.HeartbeatInterval; d != nil {
		s.HeartbeatInterval = d.Duration
	}
	return s
}

func describeShareSettings(s kafka.ShareGroupSettings) string {
	orDefault := func(d time.Duration) string {
		if d == 0 {
			return "the broker's default"
		}
		return d.String()
	}
	return fmt.Sprintf("new partitions start at the %s offset, records are locked for %s, archived after %d deliveries; session timeout %s, heartbeat interval %s",
		strings.ToLower(s.StartFrom), s.RecordLock, s.DeliveryCountLimit, orDefault(s.SessionTimeout), orDefault(s.HeartbeatInterval))
}

// classifyShareGroupError shows the failures of its kind of group; nil for the
// others (classifyGroupConfigError).
func classifyShareGroupError(sp *sluicev1.StreamPipeline, err error) error {
	switch {
	case errors.Is(err, kafka.ErrShareGroupsUnsupported):
		return stalled(sluicev1.ReasonShareGroupsUnsupported,
			"spec.source.groupType Share: %v; use groupType Consumer on this cluster", err)
	case kafka.Classify(err) == kafka.ProblemInvalidConfig:
		return stalled(sluicev1.ReasonInvalidShareGroupConfig,
			"the cluster refused the share group configs (%v): the broker's group.share.* bounds (min/max record lock duration, delivery count limit, session timeout, heartbeat interval) must allow %s",
			err, describeShareSettings(shareGroupSettings(sp)))
	}
	return nil
}
