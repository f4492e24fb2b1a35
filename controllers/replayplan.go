package controllers

import (
	"fmt"
	"strings"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/replay"
)

// replayPlan is what a StreamReplay reads, where it copies to and how it
// selects, resolved against its pipeline.
type replayPlan struct {
	topics []string
	target string
	kind   replay.TargetKind
	sel    replay.Selection
	ranges map[int32]replay.OffsetRange
	// group holds the replay's position, transactionalID names its producer.
	group, transactionalID string
}

// planReplay resolves sr against its pipeline sp. An error is a
// replay.InvalidSelectionError: the replay can't run as written.
func planReplay(sr *sluicev1.StreamReplay, sp *sluicev1.StreamPipeline) (replayPlan, error) {
	p := replayPlan{ranges: map[int32]replay.OffsetRange{}}
	switch sr.Spec.From {
	case sluicev1.ReplayFromSource:
		p.topics = []string{sp.Spec.Source.Topic}
	case sluicev1.ReplayFromRetryTopics:
		p.topics = sp.RetryTopics()
		if len(p.topics) == 0 {
			return p, &replay.InvalidSelectionError{Field: "spec.from", Message: fmt.Sprintf("pipeline %s has no retry topics (delivery.retry.attempts is 0, or source.groupType is Share)", sp.Name)}
		}
	default:
		p.topics = []string{sp.DeadLetterTopic()}
	}
	switch {
	case sr.Spec.Mode == sluicev1.ReplayModeRewind && sp.Share():
		// A share group acknowledges records one by one: it has a start
		// offset per partition but no position of each consumer to go back
		// to, and records before it may be acknowledged or not.
		return p, &replay.InvalidSelectionError{Field: "spec.mode", Message: fmt.Sprintf("pipeline %s reads as a share group (source.groupType Share): "+
			"mode Rewind moves a consumer group's positions; replay the records with mode Redrive from Source instead", sp.Name)}
	case sr.Spec.Mode == sluicev1.ReplayModeRewind, sr.Spec.Mode == sluicev1.ReplayModeReprocess:
		// Nothing is copied: no target.
	default:
		if err := planTarget(&p, sr, sp); err != nil {
			return p, err
		}
	}
	sel := sr.Spec.Select
	if sel.Since != nil {
		p.sel.Since = sel.Since.Time
	}
	if sel.Until != nil {
		p.sel.Until = sel.Until.Time
	}
	for _, c := range sel.ErrorClasses {
		p.sel.Classes = append(p.sel.Classes, string(c))
	}
	p.sel.MessageContains = sel.MessageContains
	p.sel.OriginalPartition = sel.OriginalPartition
	if o := sel.OriginalOffsets; o != nil {
		p.sel.OriginalFrom, p.sel.OriginalTo = o.From, o.To
	}
	if sr.Spec.Mode != sluicev1.ReplayModeReprocess {
		p.sel.MaxRedrives = int(sr.MaxRedrivesOr()) // a Reprocess copies nothing: nothing to park
	}
	for _, r := range sel.Partitions {
		p.ranges[r.Partition] = replay.OffsetRange{From: r.From, To: r.To}
	}
	// One group and one transactional ID per StreamReplay object (its UID), so
	// a new replay with the same name starts afresh and two never share a
	// position.
	p.group = "sluice-replay." + sr.Namespace + "." + sr.Name + "." + strings.SplitN(string(sr.UID), "-", 2)[0]
	p.transactionalID = p.group
	return p, nil
}

// planTarget resolves where a redrive copies to.
func planTarget(p *replayPlan, sr *sluicev1.StreamReplay, sp *sluicev1.StreamPipeline) error {
	switch sr.Spec.Target {
	case sluicev1.ReplayTargetSource:
		p.target, p.kind = sp.Spec.Source.Topic, replay.ToSource
	default:
		retry := sp.RetryTopics()
		if len(retry) == 0 {
			return &replay.InvalidSelectionError{Field: "spec.target",
				Message: fmt.Sprintf("pipeline %s has no retry topics (delivery.retry.attempts is 0, or source.groupType is Share): use target Source", sp.Name)}
		}
		p.target, p.kind = retry[0], replay.ToRetryTopic
	}
	for _, t := range p.topics {
		if t == p.target {
			return &replay.InvalidSelectionError{Field: "spec.target", Message: fmt.Sprintf("the replay would copy %s into itself", t)}
		}
	}
	return nil
}

// snapshotParts and partsOfSnapshot convert between the engine's snapshot and
// the one stored in status.
func snapshotParts(st []sluicev1.ReplaySnapshotPartition) []replay.Partition {
	out := make([]replay.Partition, len(st))
	for i, s := range st {
		out[i] = replay.Partition{Topic: s.Topic, Partition: s.Partition, Start: s.Start, End: s.End}
	}
	return out
}

func partsOfSnapshot(parts []replay.Partition, matched []int64) []sluicev1.ReplaySnapshotPartition {
	out := make([]sluicev1.ReplaySnapshotPartition, len(parts))
	for i, p := range parts {
		out[i] = sluicev1.ReplaySnapshotPartition{Topic: p.Topic, Partition: p.Partition, Start: p.Start, End: p.End}
		if matched != nil {
			m := matched[i]
			out[i].Matched = &m
		}
	}
	return out
}
