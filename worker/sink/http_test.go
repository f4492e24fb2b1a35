package sink_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/worker/failure"
	"github.com/sluice-dev/sluice/worker/sink"
)

func TestHTTPStatusDecidesTheRoute(t *testing.T) {
	cases := []struct {
		status int
		want   failure.Class
	}{
		{200, ""}, {201, ""}, {204, ""},
		{400, failure.ClassPoison}, {404, failure.ClassPoison}, {409, failure.ClassPoison}, {422, failure.ClassPoison},
		{408, failure.ClassTransient}, {429, failure.ClassTransient},
		{500, failure.ClassTransient}, {502, failure.ClassTransient}, {503, failure.ClassTransient}, {504, failure.ClassTransient},
	}
	for _, tc := range cases {
		t.Run(strconv.Itoa(tc.status), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) { rw.WriteHeader(tc.status) }))
			defer srv.Close()
			err := sink.NewHTTP(srv.URL, time.Second).Write(context.Background(), records("x"))[0]
			if got := failure.ClassOf(err); got != tc.want {
				t.Errorf("HTTP %d → %q (%v), want %q", tc.status, got, err, tc.want)
			}
		})
	}
}

func TestHTTPSendsTheKeyAndTraceAndTimesOut(t *testing.T) {
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		if r.Header.Get(sink.HeaderIdempotencyKey) == "slow" {
			time.Sleep(300 * time.Millisecond)
		}
	}))
	defer srv.Close()
	s := sink.NewHTTP(srv.URL, 100*time.Millisecond)
	rec := &sink.Record{ConfiguredKey: "orders/0/7", Rec: &kgo.Record{Value: []byte("{}"), Headers: []kgo.RecordHeader{
		{Key: "traceparent", Value: []byte("00-aa-bb-01")}, {Key: "content-type", Value: []byte("application/json")},
	}}}
	if err := s.Write(context.Background(), []*sink.Record{rec})[0]; err != nil {
		t.Fatal(err)
	}
	if got.Get("Idempotency-Key") != "orders/0/7" || got.Get("Traceparent") != "00-aa-bb-01" || got.Get("Content-Type") != "application/json" {
		t.Errorf("headers = %v", got)
	}
	rec.ConfiguredKey = "slow"
	if err := s.Write(context.Background(), []*sink.Record{rec})[0]; failure.ClassOf(err) != failure.ClassTransient {
		t.Errorf("timeout → %v, want transient", err)
	}
	srv.Close()
	if err := s.Write(context.Background(), []*sink.Record{rec})[0]; failure.ClassOf(err) != failure.ClassTransient {
		t.Errorf("connection refused → %v, want transient", err)
	}
}

func TestLogWritesOneLinePerRecordInOneWrite(t *testing.T) {
	var buf bytes.Buffer
	s := sink.NewLog(&buf, "Text")
	recs := records("a", "b")
	for i, r := range recs {
		r.Rec.Topic, r.Rec.Offset = "orders", int64(i)
	}
	if errs := s.Write(context.Background(), recs); errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	if got := buf.String(); got != "orders/0/0 key=k0 value=a\norders/0/1 key=k1 value=b\n" {
		t.Errorf("output = %q", got)
	}
	buf.Reset()
	_ = sink.NewLog(&buf, "JSON").Write(context.Background(), records("v"))
	if !strings.Contains(buf.String(), `"idempotencyKey":"k0"`) || !strings.Contains(buf.String(), `"value":"v"`) {
		t.Errorf("json = %q", buf.String())
	}
}
