package sink

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

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

// BodyExcerptBytes bounds how much of a failed response's body goes into the
// error, and so into logs, spans and dead-letter headers: enough for a
// service's error message, not a page. Control characters are replaced.
const BodyExcerptBytes = 256

// HTTPOptions configure the HTTP sink.
type HTTPOptions struct {
	URL     string
	Timeout time.Duration
	// BearerTokenFile, BasicAuth*File and Headers name mounted Secret files;
	// they are read again when they change (Kubernetes rotates mounted
	// Secrets in place).
	BearerTokenFile                              string
	BasicAuthUsernameFile, BasicAuthPasswordFile string
	Headers                                      map[string]string // header name → file
	// HealthURL is a health endpoint of its own (healthy on 2xx/3xx); empty
	// checks URL itself (reachable unless 502, 503 or 504).
	HealthURL    string
	HealthMethod string // HEAD when empty
	// HealthDisabled: Ping always succeeds.
	HealthDisabled bool
	// Concurrency is how many requests the worker may have at the service at
	// once (processing.maxInFlight); that many connections are kept open, so
	// a busy worker doesn't open and close one per request. At least 64.
	Concurrency int
}

// HTTP POSTs each record's value to a URL. 2xx is success; 408, 429, 5xx,
// timeouts and connection errors are transient; any other status is a poison
// pill (the service said the request itself is wrong). Redirects are not
// followed: a 3xx is the answer, and a poison pill, so a pipeline can't be
// bounced to an address its author didn't name.
type HTTP struct {
	opts    HTTPOptions
	url     string // redacted, for messages
	client  *http.Client
	bearer  *fileValue
	user    *fileValue
	pass    *fileValue
	headers map[string]*fileValue
}

// NewHTTP returns an HTTP sink posting to url without credentials.
func NewHTTP(url string, timeout time.Duration) *HTTP {
	return NewHTTPWith(HTTPOptions{URL: url, Timeout: timeout})
}

// NewHTTPWith returns an HTTP sink.
func NewHTTPWith(o HTTPOptions) *HTTP {
	h := &HTTP{
		opts: o,
		url:  redact(o.URL),
		client: &http.Client{
			Transport: &http.Transport{
				Proxy:               http.ProxyFromEnvironment,
				MaxIdleConnsPerHost: max(64, o.Concurrency),
				IdleConnTimeout:     90 * time.Second,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		headers: map[string]*fileValue{},
	}
	if o.BearerTokenFile != "" {
		h.bearer = newFileValue(o.BearerTokenFile)
	}
	if o.BasicAuthUsernameFile != "" {
		h.user, h.pass = newFileValue(o.BasicAuthUsernameFile), newFileValue(o.BasicAuthPasswordFile)
	}
	for name, file := range o.Headers {
		h.headers[http.CanonicalHeaderKey(name)] = newFileValue(file)
	}
	return h
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
	ctx, cancel := context.WithTimeout(ctx, h.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.opts.URL, bytes.NewReader(r.Rec.Value))
	if err != nil {
		return failure.Poison(fmt.Errorf("POST %s: %w", h.url, err))
	}
	if err := h.authorize(req); err != nil {
		return failure.Transient(fmt.Errorf("POST %s: %w", h.url, err))
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
		return failure.Transient(fmt.Errorf("POST %s: %w", h.url, unwrapURLError(err)))
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, BodyExcerptBytes))
	_, _ = io.Copy(io.Discard, resp.Body) // drain, so the connection is reused
	_ = resp.Body.Close()
	return classifyResponse(resp, excerpt(body))
}

// authorize adds the configured credentials and headers.
func (h *HTTP) authorize(req *http.Request) error {
	for name, v := range h.headers {
		val, err := v.get()
		if err != nil {
			return err
		}
		req.Header.Set(name, val)
	}
	switch {
	case h.bearer != nil:
		tok, err := h.bearer.get()
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	case h.user != nil:
		u, err := h.user.get()
		if err != nil {
			return err
		}
		p, err := h.pass.get()
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(u+":"+p)))
	}
	return nil
}

// classifyResponse maps an HTTP answer to a routing decision.
func classifyResponse(resp *http.Response, body string) error {
	code := resp.StatusCode
	if code >= 200 && code < 300 {
		return nil
	}
	err := fmt.Errorf("HTTP %d: %s", code, body)
	switch {
	case code >= 300 && code < 400:
		return failure.Poison(fmt.Errorf("HTTP %d redirect to %s: redirects are not followed; point sink.http.url at the final address", code, redact(resp.Header.Get("Location"))))
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
		return failure.Transient(err)
	default:
		return failure.Poison(err)
	}
}

// MaxBatch implements Sink: one request per record, one breaker call each.
func (h *HTTP) MaxBatch() int { return 1 }

// Ping implements Sink (readiness). With a health URL of its own, the service
// is healthy when it answers 2xx or 3xx. Without one, the sink URL is asked
// (HEAD by default) and any answer means the service is reachable, except
// 502, 503 and 504: a proxy without a backend, or the service saying it is
// unavailable. A service that doesn't implement the method (405, 501) or
// the path (404) is up.
func (h *HTTP) Ping(ctx context.Context) error {
	if h.opts.HealthDisabled {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, h.opts.Timeout)
	defer cancel()
	target, own := h.opts.URL, h.opts.HealthURL != ""
	if own {
		target = h.opts.HealthURL
	}
	method := h.opts.HealthMethod
	if method == "" {
		method = http.MethodHead
	}
	req, err := http.NewRequestWithContext(ctx, method, target, nil)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, redact(target), err)
	}
	if err := h.authorize(req); err != nil {
		return fmt.Errorf("%s %s: %w", method, redact(target), err)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, redact(target), unwrapURLError(err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	_ = resp.Body.Close()
	if healthy(resp.StatusCode, own) {
		return nil
	}
	return fmt.Errorf("%s %s: %s", method, redact(target), resp.Status)
}

// healthy decides a health check's answer; own says the URL is a health
// endpoint rather than the sink URL.
func healthy(code int, own bool) bool {
	if own {
		return code >= 200 && code < 400
	}
	return code != http.StatusBadGateway && code != http.StatusServiceUnavailable && code != http.StatusGatewayTimeout
}

// Close implements Sink.
func (h *HTTP) Close() error {
	h.client.CloseIdleConnections()
	return nil
}

// redact hides the credentials of a URL (user:password@ → user:xxxxx@) for
// every message that prints it.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// unwrapURLError drops net/http's *url.Error wrapper, whose message repeats
// the method and the URL (unredacted for a userinfo without password).
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// excerpt is the start of a response body, fit for a log line or a header:
// trimmed, control characters replaced, at most BodyExcerptBytes.
func excerpt(body []byte) string {
	s := strings.TrimSpace(strings.ToValidUTF8(string(body), "\uFFFD"))
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}
