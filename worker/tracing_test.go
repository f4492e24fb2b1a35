package worker

import (
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// otlpReceiver is a real OTLP/HTTP endpoint: it decodes every export sent to
// POST /v1/traces and keeps the spans with their service name.
type otlpReceiver struct {
	srv      *httptest.Server
	mu       sync.Mutex
	spans    []*tracepb.Span
	services map[string]bool
	exports  int
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	o := &otlpReceiver{services: map[string]bool{}}
	o.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
			http.NotFound(rw, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		var req coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &req)
		}
		if err != nil {
			t.Errorf("OTLP export: %v", err)
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		o.mu.Lock()
		o.exports++
		for _, rs := range req.GetResourceSpans() {
			o.services[attr(rs.GetResource().GetAttributes(), "service.name")] = true
			for _, ss := range rs.GetScopeSpans() {
				o.spans = append(o.spans, ss.GetSpans()...)
			}
		}
		o.mu.Unlock()
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		rw.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = rw.Write(out)
	}))
	t.Cleanup(o.srv.Close)
	return o
}

// trace returns the received spans of one trace, by name.
func (o *otlpReceiver) trace(traceID string) map[string][]*tracepb.Span {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[string][]*tracepb.Span{}
	for _, s := range o.spans {
		if hex.EncodeToString(s.GetTraceId()) == traceID {
			out[s.GetName()] = append(out[s.GetName()], s)
		}
	}
	return out
}

func attr(kvs []*commonpb.KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.GetKey() == key {
			v := kv.GetValue()
			if s, ok := v.GetValue().(*commonpb.AnyValue_StringValue); ok {
				return s.StringValue
			}
			if i, ok := v.GetValue().(*commonpb.AnyValue_IntValue); ok {
				return strconv.FormatInt(i.IntValue, 10)
			}
		}
	}
	return ""
}

const (
	testTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	testSpanID  = "00f067aa0ba902b7"
)

func withTraceparent(_ int, r *kgo.Record) {
	r.Headers = []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-" + testTraceID + "-" + testSpanID + "-01")}}
}

func TestTracesFollowARecordThroughTheSinkAndItsRetryCopy(t *testing.T) {
	recv := newOTLPReceiver(t)
	t.Setenv(envOTLPEndpoint, recv.srv.URL)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
	t.Setenv("OTEL_SERVICE_NAME", "")
	b := newBroker(t)
	b.createTopics(1, allTopics...)
	var attempts atomic.Int32
	svc := newService(t, func(call) int {
		if attempts.Add(1) == 1 {
			return http.StatusServiceUnavailable // to retry topic 1
		}
		return http.StatusOK
	})
	b.produce("orders", 0, 1, withTraceparent)
	w := startWorker(t, b.httpConfig(svc.srv.URL), nil)
	eventually(t, 15*time.Second, "delivered after one retry", func() bool { return len(svc.accepted()) == 1 })
	w.stop(t) // flushes the exporter

	spans := testSpanNames(b, recv.trace(testTraceID))
	one := func(name string) *tracepb.Span {
		t.Helper()
		if len(spans[name]) != 1 {
			t.Fatalf("%d %q spans in trace %s, want 1; got %v", len(spans[name]), name, testTraceID, names(spans))
		}
		return spans[name][0]
	}
	receive, process := one("orders receive"), one("orders process")
	publish := one("orders.retry.1 publish")
	retryProcess := one("orders.retry.1 process")
	// The retry copy is fetched before it is due, then again (a receive span
	// each time); the second one is processed.
	var retryReceive *tracepb.Span
	for _, s := range spans["orders.retry.1 receive"] {
		if hex.EncodeToString(s.GetParentSpanId()) != hex.EncodeToString(publish.GetSpanId()) {
			t.Errorf("a receive of the retry copy has parent %x, want the publish span", s.GetParentSpanId())
		}
		if string(s.GetSpanId()) == string(retryProcess.GetParentSpanId()) {
			retryReceive = s
		}
	}
	if retryReceive == nil {
		t.Fatalf("the retry copy's process span is not the child of one of its receive spans")
	}
	// Each span is the child of the one before: the trace goes from the
	// producer's span into the sink call, the retry copy and its sink call.
	chain := []struct {
		name  string
		span  *tracepb.Span
		after string
	}{
		{"orders receive", receive, testSpanID},
		{"orders process", process, hex.EncodeToString(receive.GetSpanId())},
		{"orders.retry.1 publish", publish, hex.EncodeToString(process.GetSpanId())},
		{"orders.retry.1 receive", retryReceive, hex.EncodeToString(publish.GetSpanId())},
		{"orders.retry.1 process", retryProcess, hex.EncodeToString(retryReceive.GetSpanId())},
	}
	for _, c := range chain {
		if got := hex.EncodeToString(c.span.GetParentSpanId()); got != c.after {
			t.Errorf("%s: parent span %s, want %s", c.name, got, c.after)
		}
	}
	for _, c := range []struct {
		span                    *tracepb.Span
		outcome, class, attempt string
		failed                  bool
	}{
		{process, outcomeRetried, "transient", "0", true},
		{retryProcess, outcomeProcessed, "", "1", false},
	} {
		a := c.span.GetAttributes()
		if attr(a, attrOutcome) != c.outcome || attr(a, attrErrorClass) != c.class || attr(a, attrAttempt) != c.attempt {
			t.Errorf("%s: outcome %q, class %q, attempt %q; want %q, %q, %q", c.span.GetName(),
				attr(a, attrOutcome), attr(a, attrErrorClass), attr(a, attrAttempt), c.outcome, c.class, c.attempt)
		}
		if failed := c.span.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR; failed != c.failed {
			t.Errorf("%s: error status %v, want %v", c.span.GetName(), failed, c.failed)
		}
		if attr(a, "messaging.kafka.message.offset") != "0" {
			t.Errorf("%s: offset attribute %q", c.span.GetName(), attr(a, "messaging.kafka.message.offset"))
		}
	}
	// The service saw the trace continue: its parent is the process span.
	want := "00-" + testTraceID + "-" + hex.EncodeToString(retryProcess.GetSpanId()) + "-01"
	if got := svc.accepted()[0].trace; got != want {
		t.Errorf("traceparent at the sink = %q, want %q", got, want)
	}
	recv.mu.Lock()
	defer recv.mu.Unlock()
	if !recv.services[defaultServiceName] || len(recv.services) != 1 {
		t.Errorf("service names %v, want only %s", recv.services, defaultServiceName)
	}
}

// testSpanNames renames spans "<topic> <operation>" after the topic's name in
// the test (a real cluster gives every test its own topics).
func testSpanNames(b *broker, spans map[string][]*tracepb.Span) map[string][]*tracepb.Span {
	out := make(map[string][]*tracepb.Span, len(spans))
	for name, s := range spans {
		if topic, op, ok := strings.Cut(name, " "); ok {
			name = b.testName(topic) + " " + op
		}
		out[name] = append(out[name], s...)
	}
	return out
}

func names(spans map[string][]*tracepb.Span) []string {
	var out []string
	for n := range spans {
		out = append(out, n)
	}
	return out
}

func TestTracingIsOffWithoutAnOTLPEndpoint(t *testing.T) {
	recv := newOTLPReceiver(t)
	for _, tc := range []struct {
		name string
		env  map[string]string
	}{
		{"no endpoint", map[string]string{envOTLPEndpoint: "", envOTLPTracesEndpoint: ""}},
		{"SDK disabled", map[string]string{envOTLPEndpoint: recv.srv.URL, "OTEL_SDK_DISABLED": "true"}},
		{"no traces exporter", map[string]string{envOTLPTracesEndpoint: recv.srv.URL + "/v1/traces", "OTEL_TRACES_EXPORTER": "none"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(envOTLPEndpoint, "")
			t.Setenv(envOTLPTracesEndpoint, "")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			b := newBroker(t)
			b.createTopics(1, allTopics...)
			svc := newService(t, ok)
			b.produce("orders", 0, 1, withTraceparent)
			w := startWorker(t, b.httpConfig(svc.srv.URL), nil)
			eventually(t, 15*time.Second, "delivered", func() bool { return len(svc.accepted()) == 1 })
			if w.w.tracing != nil {
				t.Error("tracing is on")
			}
			w.stop(t)
			// Without spans the record's own trace context goes to the sink.
			if got, want := svc.accepted()[0].trace, "00-"+testTraceID+"-"+testSpanID+"-01"; got != want {
				t.Errorf("traceparent at the sink = %q, want %q", got, want)
			}
		})
	}
	recv.mu.Lock()
	defer recv.mu.Unlock()
	if recv.exports != 0 {
		t.Errorf("the OTLP endpoint got %d exports with tracing off", recv.exports)
	}
}
