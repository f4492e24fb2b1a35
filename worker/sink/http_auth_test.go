package sink_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/worker/failure"
	"github.com/sluice-dev/sluice/worker/sink"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestHTTPSendsCredentialsFromFiles: bearer token, basic auth and headers come
// from mounted Secret files, on writes and on the health check.
func TestHTTPSendsCredentialsFromFiles(t *testing.T) {
	dir := t.TempDir()
	var got []http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = append(got, r.Header.Clone()) }))
	defer srv.Close()

	bearer := sink.NewHTTPWith(sink.HTTPOptions{
		URL: srv.URL, Timeout: time.Second, BearerTokenFile: writeFile(t, dir, "token", "t0k3n\n"),
		Headers: map[string]string{"X-Api-Key": writeFile(t, dir, "key", "k3y")},
	})
	if err := bearer.Write(context.Background(), records("x"))[0]; err != nil {
		t.Fatal(err)
	}
	if err := bearer.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	basic := sink.NewHTTPWith(sink.HTTPOptions{
		URL: srv.URL, Timeout: time.Second,
		BasicAuthUsernameFile: writeFile(t, dir, "username", "orders-app"), BasicAuthPasswordFile: writeFile(t, dir, "password", "s3cr3t"),
	})
	if err := basic.Write(context.Background(), records("x"))[0]; err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("%d requests, want 3", len(got))
	}
	for i, h := range got[:2] {
		if h.Get("Authorization") != "Bearer t0k3n" || h.Get("X-Api-Key") != "k3y" {
			t.Errorf("request %d: Authorization %q, X-Api-Key %q", i, h.Get("Authorization"), h.Get("X-Api-Key"))
		}
	}
	if a := got[2].Get("Authorization"); a != "Basic b3JkZXJzLWFwcDpzM2NyM3Q=" {
		t.Errorf("basic auth header %q", a)
	}
}

// TestHTTPNeverFollowsRedirects: a 3xx is the service's answer, a poison pill
// that names the target; the target never sees the record.
func TestHTTPNeverFollowsRedirects(t *testing.T) {
	var reached atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached.Add(1) }))
	defer target.Close()
	for _, code := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			http.Redirect(rw, r, target.URL+"/internal", code)
		}))
		err := sink.NewHTTP(srv.URL, time.Second).Write(context.Background(), records("x"))[0]
		srv.Close()
		if failure.ClassOf(err) != failure.ClassPoison || !strings.Contains(err.Error(), "not followed") || !strings.Contains(err.Error(), "/internal") {
			t.Errorf("HTTP %d → %v, want a poison pill naming the redirect target", code, err)
		}
	}
	if reached.Load() != 0 {
		t.Errorf("the redirect target got %d requests", reached.Load())
	}
}

// TestHTTPErrorsNeverCarryCredentialsOrWholeBodies: the URL is redacted in
// every error, and a response body is cut to a bounded, printable excerpt.
func TestHTTPErrorsNeverCarryCredentialsOrWholeBodies(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		rw.WriteHeader(http.StatusBadRequest)
		_, _ = rw.Write([]byte("bad\x1b[31m request " + strings.Repeat("x", 10_000)))
	}))
	defer srv.Close()
	err := sink.NewHTTP(srv.URL, time.Second).Write(context.Background(), records("x"))[0]
	if err == nil || len(err.Error()) > sink.BodyExcerptBytes+64 || strings.ContainsRune(err.Error(), 0x1b) {
		t.Errorf("error is %d bytes (%q): want a printable excerpt of at most %d bytes", len(err.Error()), err, sink.BodyExcerptBytes)
	}

	secret := strings.Replace(srv.URL, "http://", "http://user:hunter2@", 1)
	srv.Close() // connection refused: the error names the URL
	for _, s := range []*sink.HTTP{sink.NewHTTP(secret, time.Second), sink.NewHTTPWith(sink.HTTPOptions{URL: secret, HealthURL: secret, Timeout: time.Second})} {
		errs := []error{s.Write(context.Background(), records("x"))[0], s.Ping(context.Background())}
		for _, err := range errs {
			if err == nil || strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q must exist and not show the password", err)
			}
		}
	}
}

// TestHTTPHealthCheck: the default check asks the sink URL and counts any
// answer as reachable except 502/503/504 (a service without HEAD is up); a
// health URL of its own must answer 2xx or 3xx; the method is configurable.
func TestHTTPHealthCheck(t *testing.T) {
	var status atomic.Int32
	var method atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		method.Store(r.Method)
		rw.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	cases := []struct {
		opts   sink.HTTPOptions
		status int
		ready  bool
		method string
	}{
		{sink.HTTPOptions{}, http.StatusOK, true, "HEAD"},
		{sink.HTTPOptions{}, http.StatusNotImplemented, true, "HEAD"},
		{sink.HTTPOptions{}, http.StatusMethodNotAllowed, true, "HEAD"},
		{sink.HTTPOptions{}, http.StatusNotFound, true, "HEAD"},
		{sink.HTTPOptions{}, http.StatusInternalServerError, true, "HEAD"},
		{sink.HTTPOptions{}, http.StatusServiceUnavailable, false, "HEAD"},
		{sink.HTTPOptions{}, http.StatusBadGateway, false, "HEAD"},
		{sink.HTTPOptions{HealthMethod: "GET"}, http.StatusNotImplemented, true, "GET"},
		{sink.HTTPOptions{HealthURL: srv.URL + "/healthz"}, http.StatusOK, true, "HEAD"},
		{sink.HTTPOptions{HealthURL: srv.URL + "/healthz"}, http.StatusInternalServerError, false, "HEAD"},
		{sink.HTTPOptions{HealthURL: srv.URL + "/healthz", HealthMethod: "OPTIONS"}, http.StatusNotFound, false, "OPTIONS"},
		{sink.HTTPOptions{HealthDisabled: true}, http.StatusServiceUnavailable, true, ""},
	}
	for _, tc := range cases {
		tc.opts.URL, tc.opts.Timeout = srv.URL, time.Second
		status.Store(int32(tc.status))
		method.Store("")
		err := sink.NewHTTPWith(tc.opts).Ping(context.Background())
		if (err == nil) != tc.ready || method.Load() != tc.method {
			t.Errorf("%+v answering %d: ready=%v (%v) with %q, want ready=%v with %q", tc.opts, tc.status, err == nil, err, method.Load(), tc.ready, tc.method)
		}
	}
}

// TestHTTPReadsRotatedCredentials: a token rotated in its file is used within
// the refresh interval, without a restart.
func TestHTTPReadsRotatedCredentials(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the credential refresh interval (10 s)")
	}
	dir := t.TempDir()
	var auth atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { auth.Store(r.Header.Get("Authorization")) }))
	defer srv.Close()
	s := sink.NewHTTPWith(sink.HTTPOptions{URL: srv.URL, Timeout: time.Second, BearerTokenFile: writeFile(t, dir, "token", "old")})
	_ = s.Write(context.Background(), records("x"))
	writeFile(t, dir, "token", "new")
	deadline := time.Now().Add(15 * time.Second)
	for auth.Load() != "Bearer new" && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		_ = s.Write(context.Background(), records("x"))
	}
	if auth.Load() != "Bearer new" {
		t.Fatalf("still sending %q after 15 s", auth.Load())
	}
}
