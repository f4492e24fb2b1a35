package worker

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/worker/failure"
)

func TestFailedCopyCarriesTheRecordsStory(t *testing.T) {
	ts := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	src := &kgo.Record{
		Topic: "orders", Partition: 4, Offset: 1234, Timestamp: ts, Key: []byte("k"), Value: []byte("v"),
		Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-abc-def-01")}},
	}
	info, err := decodeFailureInfo(src)
	if err != nil {
		t.Fatal(err)
	}
	t1 := ts.Add(time.Minute)
	retry := failedCopy(src, info, "orders.retry.1", "transient", errors.New("503 from sink"), t1, t1.Add(time.Second))
	retry.Topic, retry.Partition, retry.Offset = "orders.retry.1", 0, 77

	info2, err := decodeFailureInfo(retry)
	if err != nil {
		t.Fatal(err)
	}
	if info2.origin != (origin{"orders", 4, 1234, ts}) || info2.attempt != 1 || !info2.firstFailure.Equal(t1) || !info2.dueAt.Equal(t1.Add(time.Second)) {
		t.Fatalf("after one failure: %+v", info2)
	}
	t2 := t1.Add(time.Hour)
	dlq := failedCopy(retry, info2, "orders.dlq", "poison", errors.New(strings.Repeat("x", 10000)), t2, time.Time{})
	h := map[string]string{}
	for _, kv := range dlq.Headers {
		if _, dup := h[kv.Key]; dup {
			t.Errorf("header %s appears twice", kv.Key)
		}
		h[kv.Key] = string(kv.Value)
	}
	want := map[string]string{
		HeaderOriginalTopic: "orders", HeaderOriginalPartition: "4", HeaderOriginalOffset: "1234",
		HeaderOriginalTimestamp: "2026-11-01T10:00:00Z", HeaderErrorClass: "poison", HeaderAttempt: "2",
		HeaderFirstFailure: "2026-11-01T10:01:00Z", HeaderLastFailure: "2026-11-01T11:01:00Z",
		"traceparent": "00-abc-def-01",
	}
	for k, v := range want {
		if h[k] != v {
			t.Errorf("%s = %q, want %q", k, h[k], v)
		}
	}
	if _, ok := h[HeaderDueAt]; ok {
		t.Error("a dead-letter record has no due time")
	}
	if len(h[HeaderErrorMessage]) != MaxErrorMessageBytes {
		t.Errorf("error message not truncated: %d bytes", len(h[HeaderErrorMessage]))
	}
	if string(dlq.Key) != "k" || string(dlq.Value) != "v" {
		t.Error("key and value must be kept")
	}
}

func TestMalformedSluiceHeadersAreAnError(t *testing.T) {
	for _, h := range []kgo.RecordHeader{
		{Key: HeaderAttempt, Value: []byte("two")},
		{Key: HeaderAttempt, Value: []byte("-1")},
		{Key: HeaderOriginalOffset, Value: []byte("")},
		{Key: HeaderDueAt, Value: []byte("tomorrow")},
		{Key: HeaderOriginalTopic, Value: nil},
	} {
		if _, err := decodeFailureInfo(&kgo.Record{Headers: []kgo.RecordHeader{h}}); err == nil || !strings.Contains(err.Error(), h.Key) {
			t.Errorf("%s=%q: err = %v, want an error naming the header", h.Key, h.Value, err)
		}
	}
}

// FuzzDecodeFailureInfo: header decoding never panics, and whatever decodes
// survives a round trip through failedCopy.
func FuzzDecodeFailureInfo(f *testing.F) {
	f.Add("sluice-attempt", "3", "sluice-original-offset", "12")
	f.Add("sluice-due-at", "2026-11-01T10:00:00Z", "sluice-original-topic", "orders")
	f.Add("traceparent", "00-x", "sluice-original-partition", "99999999999")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		r := &kgo.Record{Topic: "t", Headers: []kgo.RecordHeader{{Key: k1, Value: []byte(v1)}, {Key: k2, Value: []byte(v2)}}}
		info, err := decodeFailureInfo(r)
		if err != nil {
			return
		}
		now := time.Unix(1e9, 0)
		c := failedCopy(r, info, "t.retry.1", "transient", errors.New("x"), now, now)
		info2, err := decodeFailureInfo(c)
		if err != nil {
			t.Fatalf("copy does not decode: %v", err)
		}
		if info2.attempt != info.attempt+1 || info2.origin.topic != info.origin.topic || info2.origin.offset != info.origin.offset {
			t.Fatalf("round trip changed the story: %+v -> %+v", info, info2)
		}
	})
}

// What the pipeline knows of a record's past: a source record is itself with
// no attempts; a foreign record in retry topic n (no Sluice headers) counts n
// attempts; a retry copy keeps its own count; headers that don't decode make
// a poison pill that still names the record.
func TestFailureInfoOf(t *testing.T) {
	retryCopy := failedCopy(&kgo.Record{Topic: "orders", Partition: 2, Offset: 7}, failureInfo{origin: origin{topic: "orders", partition: 2, offset: 7}, attempt: 1},
		"orders.retry.2", "transient", errors.New("503"), time.Now(), time.Now())
	retryCopy.Partition, retryCopy.Offset = 0, 40
	cases := []struct {
		name          string
		rec           *kgo.Record
		retryAttempts int
		wantAttempt   int
		wantOrigin    string
		wantPoison    bool
	}{
		{"source record", &kgo.Record{Topic: "orders", Partition: 1, Offset: 5}, 0, 0, "orders/1/5", false},
		{"foreign record in retry topic 2", &kgo.Record{Topic: "orders.retry.2", Partition: 0, Offset: 9}, 2, 2, "orders.retry.2/0/9", false},
		{"retry copy keeps its count", retryCopy, 2, 2, "orders/2/7", false},
		{"undecodable headers", &kgo.Record{Topic: "orders.retry.1", Partition: 3, Offset: 11,
			Headers: []kgo.RecordHeader{{Key: HeaderAttempt, Value: []byte("many")}}}, 1, 0, "orders.retry.1/3/11", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			info, err := failureInfoOf(tc.rec, tc.retryAttempts)
			if got := failure.ClassOf(err) == failure.ClassPoison; got != tc.wantPoison {
				t.Fatalf("error %v, want poison: %v", err, tc.wantPoison)
			}
			o := info.origin
			if info.attempt != tc.wantAttempt || fmt.Sprintf("%s/%d/%d", o.topic, o.partition, o.offset) != tc.wantOrigin {
				t.Fatalf("info = %+v, want attempt %d origin %s", info, tc.wantAttempt, tc.wantOrigin)
			}
		})
	}
}
