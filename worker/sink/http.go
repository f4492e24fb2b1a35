package sink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/sluice-dev/sluice/worker/failure"
)

// HeaderIdempotencyKey carries the record's idempotency key on every request, so
// the service can make a redelivery a no-op (the IETF draft's header name).
const HeaderIdempotencyKey = "Idempotency-Key"

// forwardedHeaders are record headers passed on as HTTP headers: trace context
// and content type. With tracing on, the trace context is the process span's.
var forwardedHeaders = map[string]string{
	"traceparent": "Traceparent", "tracestate": "Tracestate", "baggage": "Baggage",
	"content-type": "Content-Type",
}

// HTTP POSTs each record's value to a URL. 2xx is success; 408, 429, 5xx, timeouts
// and connection errors are transient; any other status is a poison pill (the
// service said the request itself is wrong).
type HTTP struct {
	url     string
	client  *http.Client
	timeout time.Duration
}

// NewHTTP returns an HTTP sink.
func NewHTTP(url string, timeout time.Duration) *HTTP {
	return &HTTP{
		url:     url,
		timeout: timeout,
		client: &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
		}},
	}
}

// Write implements Sink; records are sent one by one, in order.
func (h *HTTP) Write(ctx context.Context, recs []*Record) []error {
	errs := make([]error, len(recs))
	for i, r := range recs {
		errs[i] = h.post(ctx, r)
	}
	return errs
}

func (h *HTTP) post(ctx context.Context, r *Record) error {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(r.Rec.Value))
	if err != nil {
		return failure.Poison(err)
	}
	req.Header.Set(HeaderIdempotencyKey, r.IdempotencyKey())
	req.Header.Set("Content-Type", "application/octet-stream")
	for _, kv := range r.Rec.Headers {
		if name, ok := forwardedHeaders[kv.Key]; ok {
			req.Header.Set(name, string(kv.Value))
		}
	}
	if r.Trace != nil {
		// Tracing is on: the service's spans become children of the record's
		// process span (same trace, the process span as parent).
		TracePropagator.Inject(r.Trace, propagation.HeaderCarrier(req.Header))
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return failure.Transient(fmt.Errorf("POST %s: %w", h.url, err))
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, resp.Body) // drain, so the connection is reused
	_ = resp.Body.Close()
	return classifyStatus(resp.StatusCode, bytes.TrimSpace(body))
}

// classifyStatus maps an HTTP status to a routing decision.
func classifyStatus(code int, body []byte) error {
	if code >= 200 && code < 300 {
		return nil
	}
	err := fmt.Errorf("HTTP %d: %s", code, body)
	switch {
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
		return failure.Transient(err)
	default:
		return failure.Poison(err)
	}
}

// MaxBatch implements Sink: one request per record, one breaker call each.
func (h *HTTP) MaxBatch() int { return 1 }

// Ping implements Sink: any HTTP answer (even 404 or 405 to a HEAD) means the
// service is reachable.
func (h *HTTP) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, h.url, nil)
	if err != nil {
		return err
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode >= 500 {
		return errors.New(resp.Status)
	}
	return nil
}

// Close implements Sink.
func (h *HTTP) Close() error {
	h.client.CloseIdleConnections()
	return nil
}
