package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ErrNextGenGroupsUnsupported is wrapped when the cluster can't run KIP-848
// consumer groups.
var ErrNextGenGroupsUnsupported = errors.New("KIP-848 consumer groups unsupported")

// consumerGroupHeartbeatKey is the ConsumerGroupHeartbeat API (KIP-848).
const consumerGroupHeartbeatKey = 68

// CheckNextGenGroups says whether the cluster runs KIP-848 consumer groups:
// its brokers offer ConsumerGroupHeartbeat v1 (Kafka 4.0, where the protocol
// is complete; the client falls back to the classic protocol below it).
func CheckNextGenGroups(ctx context.Context, cl *kgo.Client) error {
	resp, err := kmsg.NewPtrApiVersionsRequest().RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("api versions: %w", err)
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return fmt.Errorf("api versions: %w", err)
	}
	return nextGenSupport(resp)
}

func nextGenSupport(resp *kmsg.ApiVersionsResponse) error {
	for _, k := range resp.ApiKeys {
		if k.ApiKey == consumerGroupHeartbeatKey {
			if k.MaxVersion >= 1 {
				return nil
			}
			return fmt.Errorf("%w: the brokers offer ConsumerGroupHeartbeat up to v%d; v1 (Kafka 4.0) is needed", ErrNextGenGroupsUnsupported, k.MaxVersion)
		}
	}
	return fmt.Errorf("%w: the brokers do not offer the ConsumerGroupHeartbeat API (Kafka 4.0 or newer is needed)", ErrNextGenGroupsUnsupported)
}

// NextGenGroupSettings are the group configs Sluice sets on a KIP-848 group:
// the session timeout and heartbeat interval are the group's there, not the
// member's. A zero value is not set (the broker's default applies).
type NextGenGroupSettings struct {
	SessionTimeout, HeartbeatInterval time.Duration
}

// Configs are the settings as group config names and values.
func (s NextGenGroupSettings) Configs() map[string]string {
	out := map[string]string{}
	if s.SessionTimeout > 0 {
		out["consumer.session.timeout.ms"] = strconv.FormatInt(s.SessionTimeout.Milliseconds(), 10)
	}
	if s.HeartbeatInterval > 0 {
		out["consumer.heartbeat.interval.ms"] = strconv.FormatInt(s.HeartbeatInterval.Milliseconds(), 10)
	}
	return out
}
