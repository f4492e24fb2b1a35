package replay

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/worker/failure"
)

func headerMap(r *kgo.Record) map[string][]string {
	m := map[string][]string{}
	for _, h := range r.Headers {
		m[h.Key] = append(m[h.Key], string(h.Value))
	}
	return m
}

func TestCopyOf(t *testing.T) {
	now := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	dl := deadLetter("poison", "bad amount", "4", "77", "1", now.Add(-time.Hour))
	dl.Key = []byte("k")
	dl.Headers = append(dl.Headers,
		kgo.RecordHeader{Key: failure.HeaderAttempt, Value: []byte("4")},
		kgo.RecordHeader{Key: "traceparent", Value: []byte("00-abc-def-01")})
	source := &kgo.Record{Topic: "orders", Partition: 3, Offset: 12, Key: []byte("s"), Value: []byte("v"), Timestamp: now.Add(-24 * time.Hour)}

	t.Run("to the retry topic: due now, one attempt, one more redrive, the story kept", func(t *testing.T) {
		h := headerMap(CopyOf(dl, "orders.retry.1", ToRetryTopic, "ns/fix-amounts", now))
		want := map[string]string{
			failure.HeaderOriginalTopic: "orders", failure.HeaderOriginalPartition: "4", failure.HeaderOriginalOffset: "77",
			failure.HeaderErrorClass: "poison", failure.HeaderErrorMessage: "bad amount",
			failure.HeaderAttempt: "1", failure.HeaderDueAt: now.Format(time.RFC3339Nano),
			failure.HeaderRedriveCount: "2", failure.HeaderRedrivenBy: "ns/fix-amounts", "traceparent": "00-abc-def-01",
		}
		for k, v := range want {
			if len(h[k]) != 1 || h[k][0] != v {
				t.Errorf("header %s = %q, want [%q]", k, h[k], v)
			}
		}
	})
	t.Run("to the source topic: no attempt and no due time, so all retries again", func(t *testing.T) {
		h := headerMap(CopyOf(dl, "orders", ToSource, "ns/r", now))
		if h[failure.HeaderAttempt] != nil || h[failure.HeaderDueAt] != nil {
			t.Fatalf("attempt/due headers kept: %v", h)
		}
		if h[failure.HeaderRedriveCount][0] != "2" || h[failure.HeaderOriginalOffset][0] != "77" {
			t.Fatalf("headers %v", h)
		}
	})
	t.Run("a source record gets its own origin, so its idempotency key is unchanged", func(t *testing.T) {
		c := CopyOf(source, "orders.retry.1", ToRetryTopic, "ns/r", now)
		h := headerMap(c)
		if h[failure.HeaderOriginalTopic][0] != "orders" || h[failure.HeaderOriginalPartition][0] != "3" || h[failure.HeaderOriginalOffset][0] != "12" {
			t.Fatalf("origin headers %v", h)
		}
		if h[failure.HeaderOriginalTimestamp][0] != source.Timestamp.Format(time.RFC3339Nano) {
			t.Fatalf("origin timestamp %v", h[failure.HeaderOriginalTimestamp])
		}
		if string(c.Key) != "s" || string(c.Value) != "v" || c.Topic != "orders.retry.1" {
			t.Fatalf("copy %+v", c)
		}
	})
	t.Run("to the parked topic: kept as it was", func(t *testing.T) {
		h := headerMap(CopyOf(dl, "orders.dlq.parked", ToParked, "ns/r", now))
		if h[failure.HeaderRedriveCount][0] != "1" || h[failure.HeaderAttempt][0] != "4" || h[failure.HeaderRedrivenBy] != nil {
			t.Fatalf("headers %v", h)
		}
	})
}
