package v1alpha1_test

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

// TestUnsetTimingsFitTheSetOnes: a default never contradicts what the user
// wrote; each row is one setting (or two) alone.
func TestUnsetTimingsFitTheSetOnes(t *testing.T) {
	s, m := time.Second, time.Minute
	cases := []struct {
		name                      string
		edit                      func(*sluicev1.StreamPipelineSpec)
		maxPoll, session, hb, pto time.Duration
	}{
		{"nothing set", func(*sluicev1.StreamPipelineSpec) {}, 10 * m, 45 * s, 3 * s, 30 * s},
		{"sessionTimeout: 10s", func(sp *sluicev1.StreamPipelineSpec) { sp.Consumer.SessionTimeout = dur(10 * s) }, 10 * m, 10 * s, 3 * s, 30 * s},
		{"sessionTimeout: 6s", func(sp *sluicev1.StreamPipelineSpec) { sp.Consumer.SessionTimeout = dur(6 * s) }, 10 * m, 6 * s, 2 * s, 30 * s},
		{"maxPollInterval: 30s", func(sp *sluicev1.StreamPipelineSpec) { sp.Consumer.MaxPollInterval = dur(30 * s) }, 30 * s, 15 * s, 3 * s, 30 * s},
		{"maxPollInterval: 20s", func(sp *sluicev1.StreamPipelineSpec) { sp.Consumer.MaxPollInterval = dur(20 * s) }, 20 * s, 10 * s, 3 * s, 20 * s},
		{"heartbeatInterval: 20s", func(sp *sluicev1.StreamPipelineSpec) { sp.Consumer.HeartbeatInterval = dur(20 * s) }, 10 * m, 60 * s, 20 * s, 30 * s},
		{"sessionTimeout: 15m", func(sp *sluicev1.StreamPipelineSpec) { sp.Consumer.SessionTimeout = dur(15 * m) }, 30 * m, 15 * m, 3 * s, 30 * s},
		{"processingTimeout: 20m", func(sp *sluicev1.StreamPipelineSpec) { sp.Delivery.ProcessingTimeout = dur(20 * m) }, 20 * m, 45 * s, 3 * s, 20 * m},
	}
	for _, tc := range cases {
		sp := &sluicev1.StreamPipeline{}
		tc.edit(&sp.Spec)
		got := sp.Timings()
		want := sluicev1.ConsumerTimings{MaxPollInterval: tc.maxPoll, SessionTimeout: tc.session, HeartbeatInterval: tc.hb, ProcessingTimeout: tc.pto}
		if got != want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, want)
		}
		if got.HeartbeatInterval*3 > got.SessionTimeout || got.SessionTimeout >= got.MaxPollInterval || got.ProcessingTimeout > got.MaxPollInterval {
			t.Errorf("%s: %+v breaks heartbeat×3 ≤ session < maxPollInterval ≥ processingTimeout", tc.name, got)
		}
	}
}

func TestUnsetBackoffAndWarmupFitTheSetOnes(t *testing.T) {
	s, m := time.Second, time.Minute
	backoff := []struct {
		name         string
		edit         func(*sluicev1.StreamPipelineSpec)
		initial, max time.Duration
	}{
		{"nothing set", func(*sluicev1.StreamPipelineSpec) {}, s, 10 * m},
		{"max: 500ms", func(sp *sluicev1.StreamPipelineSpec) { sp.Delivery.Retry.Backoff.Max = dur(500 * time.Millisecond) }, 500 * time.Millisecond, 500 * time.Millisecond},
		{"initial: 20m", func(sp *sluicev1.StreamPipelineSpec) { sp.Delivery.Retry.Backoff.Initial = dur(20 * m) }, 20 * m, 20 * m},
		{"retention: 10m", func(sp *sluicev1.StreamPipelineSpec) { sp.Topics.Retention = dur(10 * m) }, s, 5 * m},
	}
	for _, tc := range backoff {
		sp := &sluicev1.StreamPipeline{}
		tc.edit(&sp.Spec)
		if i, mx := sp.RetryBackoff(); i != tc.initial || mx != tc.max || i > mx {
			t.Errorf("%s: backoff %v..%v, want %v..%v", tc.name, i, mx, tc.initial, tc.max)
		}
	}
	fifty := int32(50)
	for _, tc := range []struct {
		rate *int32
		want int32
	}{{nil, 100}, {&fifty, 50}} {
		sp := &sluicev1.StreamPipeline{}
		sp.Spec.RateLimit.RecordsPerSecond = tc.rate
		if got := sp.WarmupRecordsPerSecond(); got != tc.want {
			t.Errorf("warm-up with limit %v = %d, want %d", tc.rate, got, tc.want)
		}
	}
}

func TestRetryChainDelayIsTheSumOfTheBackoffs(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		name string
		edit func(*sluicev1.StreamPipelineSpec)
		want time.Duration
	}{
		{"defaults: 1s, 4s, 16s", func(*sluicev1.StreamPipelineSpec) {}, 21 * s},
		{"capped by max", func(sp *sluicev1.StreamPipelineSpec) { sp.Delivery.Retry.Backoff.Max = dur(10 * s) }, 15 * s},
		{"five attempts, multiplier 2", func(sp *sluicev1.StreamPipelineSpec) {
			sp.Delivery.Retry.Attempts, sp.Delivery.Retry.Backoff.Multiplier = new(int32(5)), new(int32(2))
		}, 31 * s},
		{"no retries", func(sp *sluicev1.StreamPipelineSpec) { sp.Delivery.Retry.Attempts = new(int32(0)) }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp := &sluicev1.StreamPipeline{}
			tc.edit(&sp.Spec)
			if got := sp.RetryChainDelay(); got != tc.want {
				t.Errorf("RetryChainDelay = %s, want %s", got, tc.want)
			}
		})
	}
}
