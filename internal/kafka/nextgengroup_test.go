package kafka

import (
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestNextGenSupportNeedsConsumerGroupHeartbeatV1(t *testing.T) {
	resp := func(keys ...kmsg.ApiVersionsResponseApiKey) *kmsg.ApiVersionsResponse {
		r := kmsg.NewPtrApiVersionsResponse()
		r.ApiKeys = keys
		return r
	}
	key := func(max int16) kmsg.ApiVersionsResponseApiKey {
		return kmsg.ApiVersionsResponseApiKey{ApiKey: consumerGroupHeartbeatKey, MaxVersion: max}
	}
	for _, tc := range []struct {
		name string
		resp *kmsg.ApiVersionsResponse
		ok   bool
	}{
		{"Kafka 4.0: v1", resp(key(1)), true},
		{"a preview: v0 only", resp(key(0)), false},
		{"Kafka 3.x: no such API", resp(kmsg.ApiVersionsResponseApiKey{ApiKey: 0, MaxVersion: 11}), false},
	} {
		err := nextGenSupport(tc.resp)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrNextGenGroupsUnsupported)) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	if got := (NextGenGroupSettings{SessionTimeout: 50 * time.Second}).Configs(); len(got) != 1 || got["consumer.session.timeout.ms"] != "50000" {
		t.Errorf("only what is set is written: %v", got)
	}
}
