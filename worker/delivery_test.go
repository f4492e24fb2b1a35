package worker

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/worker/sink"
)

func TestOffsetsAreCommittedOnlyAfterTheSinkAcknowledges(t *testing.T) {
	b := newBroker(t)
	b.createTopics(1, allTopics...)
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseRecord5 := func() { releaseOnce.Do(func() { close(release) }) }
	svc := newService(t, func(c call) int {
		if c.body == "v-5" {
			<-release // the service is slow with this one record
		}
		return http.StatusOK
	})
	b.produce("orders", 0, 10, nil)
	startWorker(t, b.httpConfig(svc.srv.URL), nil)
	// Cleanups run last-registered first: a failing check releases the held
	// request before the worker stops and the server closes (httptest's Close
	// waits for every handler, so a handler still blocked would hang the test
	// until its timeout instead of reporting the failure).
	t.Cleanup(releaseRecord5)

	eventually(t, 15*time.Second, "records 0-4 delivered", func() bool { return len(svc.accepted()) == 5 })
	// While record 5 is in flight, nothing at or past it may be committed.
	for range 10 {
		if c := sumCommitted(b.committed("test.orders"), "orders"); c > 5 {
			t.Fatalf("committed offset %d while record 5 is not acknowledged", c)
		}
		time.Sleep(30 * time.Millisecond)
	}
	releaseRecord5()
	eventually(t, 15*time.Second, "all committed", func() bool {
		return sumCommitted(b.committed("test.orders"), "orders") == 10
	})
	if n := len(svc.accepted()); n != 10 {
		t.Fatalf("accepted %d records, want 10", n)
	}
}

func TestTransientFailureVisitsEachRetryTopicThenTheDeadLetterTopic(t *testing.T) {
	b := newBroker(t)
	b.createTopics(1, allTopics...)
	var attempts atomic.Int32
	var attemptTimes [4]atomic.Int64
	svc := newService(t, func(c call) int {
		if c.body == "v-3" {
			n := attempts.Add(1)
			if n <= 4 {
				attemptTimes[n-1].Store(c.at.UnixNano())
			}
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	b.produce("orders", 0, 6, func(i int, r *kgo.Record) {
		r.Headers = []kgo.RecordHeader{{Key: "traceparent", Value: fmt.Appendf(nil, "00-%032d-%016d-01", i, i)}}
	})
	w := startWorker(t, b.httpConfig(svc.srv.URL), nil)

	eventually(t, 20*time.Second, "the failing record reaches the DLQ", func() bool { return len(b.readAll("orders.dlq")) == 1 })
	// Tried at the source and at each of the 3 retry topics, then dead-lettered.
	if n := attempts.Load(); n != 4 {
		t.Errorf("the sink saw %d attempts, want 4 (source + 3 retries)", n)
	}
	// Each retry waited for its due time: 50ms, 100ms, 200ms.
	for i, want := range []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond} {
		gap := time.Duration(attemptTimes[i+1].Load() - attemptTimes[i].Load())
		if gap < want {
			t.Errorf("retry %d came %v after the previous attempt, before its %v backoff", i+1, gap, want)
		}
	}
	for n, topic := range []string{"orders.retry.1", "orders.retry.2", "orders.retry.3"} {
		recs := b.readAll(topic)
		if len(recs) != 1 {
			t.Fatalf("%s holds %d records, want 1", topic, len(recs))
		}
		h := headerMap(recs[0])
		if h[HeaderAttempt] != strconv.Itoa(n+1) || h[HeaderDueAt] == "" || h[HeaderOriginalOffset] != "3" {
			t.Errorf("%s headers = %v", topic, h)
		}
	}
	dlq := b.readAll("orders.dlq")[0]
	h := headerMap(dlq)
	want := map[string]string{
		HeaderOriginalTopic: b.name("orders"), HeaderOriginalPartition: "0", HeaderOriginalOffset: "3",
		HeaderErrorClass: "transient", HeaderAttempt: "4", "traceparent": fmt.Sprintf("00-%032d-%016d-01", 3, 3),
	}
	for k, v := range want {
		if h[k] != v {
			t.Errorf("DLQ header %s = %q, want %q", k, h[k], v)
		}
	}
	for _, k := range []string{HeaderOriginalTimestamp, HeaderFirstFailure, HeaderLastFailure} {
		if _, err := time.Parse(time.RFC3339Nano, h[k]); err != nil {
			t.Errorf("DLQ header %s = %q: %v", k, h[k], err)
		}
	}
	if !strings.Contains(h[HeaderErrorMessage], "HTTP 503") {
		t.Errorf("DLQ error message = %q", h[HeaderErrorMessage])
	}
	if string(dlq.Key) != "key-3" || string(dlq.Value) != "v-3" {
		t.Errorf("DLQ record = %s=%s, want the original key and value", dlq.Key, dlq.Value)
	}
	if _, dueAt := h[HeaderDueAt]; dueAt {
		t.Error("the DLQ copy carries a due time")
	}
	// Everything else was delivered once, and every topic's offsets are committed.
	bodies := svc.acceptedBodies()
	for i := range 6 {
		if want := map[bool]int{true: 0, false: 1}[i == 3]; bodies[fmt.Sprintf("v-%d", i)] != want {
			t.Errorf("v-%d delivered %d times, want %d", i, bodies[fmt.Sprintf("v-%d", i)], want)
		}
	}
	eventually(t, 10*time.Second, "source and retry offsets committed", func() bool {
		c := b.committed("test.orders")
		return sumCommitted(c, "orders") == 6 && sumCommitted(c, "orders.retry.1") == 1 &&
			sumCommitted(c, "orders.retry.2") == 1 && sumCommitted(c, "orders.retry.3") == 1
	})
	if got := counterValue(t, w.w, metricRecords, "outcome", "dead_lettered"); got != 1 {
		t.Errorf("dead_lettered counter = %v", got)
	}
	if got := counterValue(t, w.w, metricRecords, "outcome", "retried"); got != 3 {
		t.Errorf("retried counter = %v", got)
	}
	for _, level := range []string{"1", "2", "3"} {
		if got := counterValue(t, w.w, metricRetries, "level", level); got != 1 {
			t.Errorf("%s{level=%q} = %v, want 1: the record was parked once in each retry level", metricRetries, level, got)
		}
	}
}

func TestARetriedRecordKeepsItsIdempotencyKey(t *testing.T) {
	b := newBroker(t)
	b.createTopics(1, allTopics...)
	var failedOnce atomic.Bool
	var mu sync.Mutex
	var keys []string
	svc := newService(t, func(c call) int {
		mu.Lock()
		keys = append(keys, c.key)
		mu.Unlock()
		if !failedOnce.Swap(true) {
			return http.StatusBadGateway
		}
		return http.StatusOK
	})
	b.produce("orders", 0, 1, nil)
	startWorker(t, b.httpConfig(svc.srv.URL), nil)
	eventually(t, 15*time.Second, "delivered after one retry", func() bool { return len(svc.accepted()) == 1 })
	mu.Lock()
	defer mu.Unlock()
	if len(keys) != 2 || keys[0] != keys[1] || keys[0] != b.name("orders")+"/0/0" {
		t.Fatalf("Idempotency-Key per attempt = %v, want the same source coordinates twice", keys)
	}
}

func TestPoisonPillGoesStraightToTheDeadLetterTopic(t *testing.T) {
	b := newBroker(t)
	b.createTopics(1, allTopics...)
	svc := newService(t, func(c call) int {
		if c.body == "v-2" {
			return http.StatusUnprocessableEntity
		}
		return http.StatusOK
	})
	b.produce("orders", 0, 5, nil)
	startWorker(t, b.httpConfig(svc.srv.URL), nil)

	eventually(t, 15*time.Second, "poison pill dead-lettered", func() bool { return len(b.readAll("orders.dlq")) == 1 })
	h := headerMap(b.readAll("orders.dlq")[0])
	if h[HeaderErrorClass] != "poison" || h[HeaderAttempt] != "1" || !strings.Contains(h[HeaderErrorMessage], "HTTP 422") {
		t.Errorf("DLQ headers = %v", h)
	}
	if n := len(b.readAll("orders.retry.1")); n != 0 {
		t.Errorf("a poison pill was retried (%d records in retry.1)", n)
	}
	eventually(t, 10*time.Second, "committed past the poison pill", func() bool {
		return sumCommitted(b.committed("test.orders"), "orders") == 5
	})
	if n := len(svc.accepted()); n != 4 {
		t.Errorf("accepted %d, want the 4 good records", n)
	}
}

func TestUndecodableRecordGoesToTheDeadLetterTopicWithTheReason(t *testing.T) {
	b := newBroker(t)
	b.createTopics(1, allTopics...)
	svc := newService(t, ok)
	cfg := b.httpConfig(svc.srv.URL)
	cfg.IdempotencyKey = &workerconfigIdempotencyKeyJSON
	b.produce("orders", 0, 3, func(i int, r *kgo.Record) {
		r.Value = fmt.Appendf(nil, `{"order":{"id":"o-%d"}}`, i)
		if i == 1 {
			r.Value = []byte("{not json")
		}
	})
	startWorker(t, cfg, nil)

	eventually(t, 15*time.Second, "undecodable record dead-lettered", func() bool { return len(b.readAll("orders.dlq")) == 1 })
	h := headerMap(b.readAll("orders.dlq")[0])
	if h[HeaderErrorClass] != "poison" || !strings.Contains(h[HeaderErrorMessage], "value is not JSON") {
		t.Errorf("DLQ headers = %v", h)
	}
	eventually(t, 10*time.Second, "good records delivered", func() bool { return len(svc.accepted()) == 2 })
	for _, c := range svc.accepted() {
		if !strings.HasPrefix(c.key, "o-") {
			t.Errorf("Idempotency-Key = %q, want the JSON field", c.key)
		}
	}
}

func TestTraceContextReachesTheSink(t *testing.T) {
	b := newBroker(t)
	b.createTopics(1, allTopics...)
	svc := newService(t, ok)
	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	b.produce("orders", 0, 1, func(_ int, r *kgo.Record) {
		r.Headers = []kgo.RecordHeader{{Key: "traceparent", Value: []byte(tp)}}
	})
	startWorker(t, b.httpConfig(svc.srv.URL), nil)
	eventually(t, 15*time.Second, "delivered", func() bool { return len(svc.accepted()) == 1 })
	if got := svc.accepted()[0].trace; got != tp {
		t.Errorf("traceparent at the sink = %q, want %q", got, tp)
	}
}

var _ sink.Sink = (*sink.HTTP)(nil)
