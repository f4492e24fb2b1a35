package kafka

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// TopicPolicy is the wanted shape of each provisioned (retry and dead-letter)
// topic.
type TopicPolicy struct {
	// Partitions; 0 means as many as the source topic has.
	Partitions        int32
	ReplicationFactor int16
	// Configs are set on creation and converged on every reconcile
	// (min.insync.replicas, retention.ms, cleanup.policy).
	Configs map[string]string
}

// TopicsReport says what provisioning found and did.
type TopicsReport struct {
	// SourcePartitions is the source topic's partition count.
	SourcePartitions int32
	Created          []string
	// ConfigsConverged lists "topic key=value" for each config brought back to
	// the policy.
	ConfigsConverged []string
	// PartitionsIncreased lists topics whose partition count was raised.
	PartitionsIncreased []string
	// NotDecreased lists topics with more partitions than the policy asks;
	// Kafka can't remove partitions, so they stay.
	NotDecreased []string
	// ReplicationDiffers lists topics whose replication factor differs from the
	// policy; changing it needs a partition reassignment, which Sluice leaves
	// to the cluster's operators.
	ReplicationDiffers []string
}

// EnsureTopics makes topics exist with policy p, given the source topic (which
// must exist and is never changed). It is idempotent: an existing topic is
// converged (configs set back, partitions raised), never recreated, and
// nothing is deleted.
func EnsureTopics(ctx context.Context, adm *kadm.Client, source string, topics []string, p TopicPolicy) (TopicsReport, error) {
	var rep TopicsReport
	all := append([]string{source}, topics...)
	details, err := adm.ListTopics(ctx, all...)
	if err != nil {
		return rep, fmt.Errorf("list topics: %w", err)
	}
	src, ok := details[source]
	if !ok || src.Err != nil {
		if ok && !isUnknownTopic(src.Err) {
			return rep, fmt.Errorf("source topic %q: %w", source, src.Err)
		}
		return rep, fmt.Errorf("source topic %q: %w", source, ErrTopicNotFound)
	}
	rep.SourcePartitions = int32(len(src.Partitions))
	want := p.Partitions
	if want == 0 {
		want = rep.SourcePartitions
	}

	var missing, existing []string
	for _, t := range topics {
		if d, ok := details[t]; ok && d.Err == nil {
			existing = append(existing, t)
			continue
		} else if ok && !isUnknownTopic(d.Err) {
			return rep, fmt.Errorf("topic %q: %w", t, d.Err)
		}
		missing = append(missing, t)
	}

	if len(missing) > 0 {
		configs := make(map[string]*string, len(p.Configs))
		for k, v := range p.Configs {
			configs[k] = kadm.StringPtr(v)
		}
		created, err := adm.CreateTopics(ctx, want, p.ReplicationFactor, configs, missing...)
		if err != nil {
			return rep, fmt.Errorf("create topics: %w", err)
		}
		for _, t := range missing {
			r, ok := created[t]
			switch {
			case !ok:
				return rep, fmt.Errorf("create topic %q: no answer", t)
			case errors.Is(r.Err, kerr.TopicAlreadyExists):
				existing = append(existing, t) // created concurrently: converge it below
			case r.Err != nil:
				return rep, fmt.Errorf("create topic %q: %w", t, withDetail(r.Err, r.ErrMessage))
			default:
				rep.Created = append(rep.Created, t)
			}
		}
	}
	if len(existing) == 0 {
		return rep, nil
	}

	// Partitions: raise, never lower.
	var raise []string
	for _, t := range existing {
		d := details[t]
		n := int32(len(d.Partitions))
		switch {
		case n < want && d.Err == nil && n > 0:
			raise = append(raise, t)
		case n > want:
			rep.NotDecreased = append(rep.NotDecreased, fmt.Sprintf("%s has %d partitions, the policy asks for %d", t, n, want))
		}
		if rf := d.Partitions.NumReplicas(); rf > 0 && rf != int(p.ReplicationFactor) {
			rep.ReplicationDiffers = append(rep.ReplicationDiffers, fmt.Sprintf("%s has replication factor %d, the policy asks for %d", t, rf, p.ReplicationFactor))
		}
	}
	if len(raise) > 0 {
		res, err := adm.UpdatePartitions(ctx, int(want), raise...)
		if err != nil {
			return rep, fmt.Errorf("add partitions: %w", err)
		}
		for _, t := range raise {
			if r, ok := res[t]; ok && r.Err != nil {
				return rep, fmt.Errorf("add partitions to %q: %w", t, withDetail(r.Err, r.ErrMessage))
			}
			rep.PartitionsIncreased = append(rep.PartitionsIncreased, t)
		}
	}

	converged, err := convergeConfigs(ctx, adm, existing, p.Configs)
	rep.ConfigsConverged = converged
	return rep, err
}

// convergeConfigs sets back every policy config that drifted, with one
// DescribeConfigs and one IncrementalAlterConfigs for all topics.
func convergeConfigs(ctx context.Context, adm *kadm.Client, topics []string, want map[string]string) ([]string, error) {
	described, err := adm.DescribeTopicConfigs(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("describe topic configs: %w", err)
	}
	var changed []string
	alter := map[string][]kadm.AlterConfig{}
	for _, rc := range described {
		if rc.Err != nil {
			return nil, fmt.Errorf("describe configs of %q: %w", rc.Name, rc.Err)
		}
		have := map[string]string{}
		for _, c := range rc.Configs {
			have[c.Key] = c.MaybeValue()
		}
		for _, k := range slices.Sorted(maps.Keys(want)) {
			if have[k] != want[k] {
				alter[rc.Name] = append(alter[rc.Name], kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: kadm.StringPtr(want[k])})
				changed = append(changed, fmt.Sprintf("%s %s=%s (was %q)", rc.Name, k, want[k], have[k]))
			}
		}
	}
	for _, t := range slices.Sorted(maps.Keys(alter)) {
		res, err := adm.AlterTopicConfigs(ctx, alter[t], t)
		if err != nil {
			return nil, fmt.Errorf("alter configs of %q: %w", t, err)
		}
		for _, r := range res {
			if r.Err != nil {
				return nil, fmt.Errorf("alter configs of %q: %w", t, withDetail(r.Err, r.ErrMessage))
			}
		}
	}
	return changed, nil
}

// DeleteTopics deletes topics and returns those it deleted; topics already
// gone (or never created) are not an error, nor in the list.
func DeleteTopics(ctx context.Context, adm *kadm.Client, topics ...string) (deleted []string, err error) {
	res, err := adm.DeleteTopics(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("delete topics: %w", err)
	}
	for _, t := range topics {
		r, ok := res[t]
		switch {
		case ok && r.Err != nil && isUnknownTopic(r.Err):
		case ok && r.Err != nil:
			return deleted, fmt.Errorf("delete topic %q: %w", t, withDetail(r.Err, r.ErrMessage))
		default:
			deleted = append(deleted, t)
		}
	}
	return deleted, nil
}

// PolicyConfigs are the topic configs Sluice sets on what it provisions.
func PolicyConfigs(minInSync int32, retentionMillis int64) map[string]string {
	return map[string]string{
		"min.insync.replicas": strconv.Itoa(int(minInSync)),
		"retention.ms":        strconv.FormatInt(retentionMillis, 10),
		"cleanup.policy":      "delete",
	}
}

func withDetail(err error, msg string) error {
	if msg == "" {
		return err
	}
	return fmt.Errorf("%w: %s", err, msg)
}
