package kafka

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ShareGroupSettings are the group configs Sluice keeps on a share group
// (KIP-932). Kafka has no per-member settings for these: the group holds
// them, set with IncrementalAlterConfigs on the GROUP resource.
type ShareGroupSettings struct {
	// StartFrom is Earliest or Latest: where a share partition the group
	// never read starts (share.auto.offset.reset; Kafka's default is latest).
	StartFrom string
	// RecordLock is share.record.lock.duration.ms: how long a member holds a
	// record before the broker gives it to another.
	RecordLock time.Duration
	// DeliveryCountLimit is share.delivery.count.limit: a record released or
	// timed out after that many deliveries is archived.
	DeliveryCountLimit int32
	// SessionTimeout and HeartbeatInterval are share.session.timeout.ms and
	// share.heartbeat.interval.ms, set only when not zero (else the broker's
	// group.share.* defaults apply). A new member gets its first records
	// about one heartbeat after it starts.
	SessionTimeout, HeartbeatInterval time.Duration
}

// Configs are the settings as group config names and values.
func (s ShareGroupSettings) Configs() map[string]string {
	out := map[string]string{
		"share.auto.offset.reset":       strings.ToLower(s.StartFrom),
		"share.record.lock.duration.ms": strconv.FormatInt(s.RecordLock.Milliseconds(), 10),
		"share.delivery.count.limit":    strconv.Itoa(int(s.DeliveryCountLimit)),
	}
	if s.SessionTimeout > 0 {
		out["share.session.timeout.ms"] = strconv.FormatInt(s.SessionTimeout.Milliseconds(), 10)
	}
	if s.HeartbeatInterval > 0 {
		out["share.heartbeat.interval.ms"] = strconv.FormatInt(s.HeartbeatInterval.Milliseconds(), 10)
	}
	return out
}

// ErrShareGroupsUnsupported is wrapped when the cluster can't run share groups.
var ErrShareGroupsUnsupported = errors.New("share groups unsupported")

// shareFetchKey is the ShareFetch API (KIP-932).
const shareFetchKey = 78

// CheckShareGroups says whether the cluster runs share groups: its brokers
// advertise the ShareFetch API and, where they report features, share.version
// is finalized at 1 or more (Kafka 4.1 ships share groups as a preview behind
// it; 4.2 enables them on new clusters).
func CheckShareGroups(ctx context.Context, cl *kgo.Client) error {
	resp, err := kmsg.NewPtrApiVersionsRequest().RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("api versions: %w", err)
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return fmt.Errorf("api versions: %w", err)
	}
	return shareSupport(resp)
}

// shareSupport reads an ApiVersions answer.
func shareSupport(resp *kmsg.ApiVersionsResponse) error {
	if !slices.ContainsFunc(resp.ApiKeys, func(k kmsg.ApiVersionsResponseApiKey) bool { return k.ApiKey == shareFetchKey }) {
		return fmt.Errorf("%w: the brokers do not offer the ShareFetch API (Kafka 4.2 or newer is needed)", ErrShareGroupsUnsupported)
	}
	if len(resp.FinalizedFeatures) == 0 {
		return nil // no feature report (older protocol versions): trust the API list
	}
	for _, f := range resp.FinalizedFeatures {
		if f.Name == "share.version" {
			if f.MaxVersionLevel >= 1 {
				return nil
			}
			break
		}
	}
	return fmt.Errorf("%w: the feature share.version is not enabled (kafka-features.sh upgrade --feature share.version=1)", ErrShareGroupsUnsupported)
}

// EnsureShareGroup sets the group's configs to s where they differ and
// returns the names it changed (sorted): the same drift repair as for topic
// configs. A group that does not exist yet takes its configs all the same; its
// members find them when they join.
func EnsureShareGroup(ctx context.Context, cl *kgo.Client, group string, s ShareGroupSettings) ([]string, error) {
	return EnsureGroupConfigs(ctx, cl, group, s.Configs())
}

// EnsureGroupConfigs sets group's configs (IncrementalAlterConfigs on the
// GROUP resource) to want where they differ and returns the names it changed,
// sorted. A group that does not exist yet takes them all the same.
func EnsureGroupConfigs(ctx context.Context, cl *kgo.Client, group string, want map[string]string) ([]string, error) {
	have, err := groupConfigs(ctx, cl, group)
	if err != nil {
		return nil, err
	}
	var changed []string
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if have[name] != want[name] {
			changed = append(changed, name)
		}
	}
	if len(changed) == 0 {
		return nil, nil
	}
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType = kmsg.ConfigResourceTypeGroupConfig
	res.ResourceName = group
	for _, name := range changed {
		c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
		c.Name, c.Op, c.Value = name, kmsg.IncrementalAlterConfigOpSet, kmsg.StringPtr(want[name])
		res.Configs = append(res.Configs, c)
	}
	req.Resources = append(req.Resources, res)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, fmt.Errorf("set group %q configs: %w", group, err)
	}
	for _, r := range resp.Resources {
		if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
			return nil, withDetail(fmt.Errorf("set group %q configs %s: %w", group, strings.Join(changed, ", "), err), derefOr(r.ErrorMessage))
		}
	}
	return changed, nil
}

// groupConfigs are the group's configs that are set on it (not the broker's
// defaults).
func groupConfigs(ctx context.Context, cl *kgo.Client, group string) (map[string]string, error) {
	req := kmsg.NewPtrDescribeConfigsRequest()
	res := kmsg.NewDescribeConfigsRequestResource()
	res.ResourceType = kmsg.ConfigResourceTypeGroupConfig
	res.ResourceName = group
	req.Resources = append(req.Resources, res)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, fmt.Errorf("describe group %q configs: %w", group, err)
	}
	out := map[string]string{}
	for _, r := range resp.Resources {
		if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
			return nil, withDetail(fmt.Errorf("describe group %q configs: %w", group, err), derefOr(r.ErrorMessage))
		}
		for _, c := range r.Configs {
			if c.Source == kmsg.ConfigSourceGroupConfig && c.Value != nil {
				out[c.Name] = *c.Value
			}
		}
	}
	return out, nil
}

func derefOr(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
