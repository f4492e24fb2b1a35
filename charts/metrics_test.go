package charts

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestManagerMetricsAnswerOnlyATokenAllowedToReadThem installs config/default
// (its RBAC: the manager's metrics-auth ClusterRole, the metrics-reader
// ClusterRole) on a real API server, runs the real manager binary as the
// operator's ServiceAccount with the args config/default renders (its metrics
// secure by default), and scrapes /metrics over HTTPS as Prometheus would
// (insecureSkipVerify, as config/prometheus/monitor.yaml: the certificate is
// self-signed). No token gets 401, a ServiceAccount's token without the
// metrics-reader role 403, one bound to it 200 with the Prometheus text of
// the operator's metrics; plain HTTP gets no metrics at all.
func TestManagerMetricsAnswerOnlyATokenAllowedToReadThem(t *testing.T) {
	objs := kustomizeBuild(t, filepath.Join(root(t), "config", "default"))
	reader := find(objs, Key{Kind: "ClusterRole", Name: "sluice-metrics-reader"})
	if reader == nil {
		t.Fatal("config/default builds no ClusterRole sluice-metrics-reader")
	}
	env := startInstallIn(t, objs, []string{"monitoring"})
	ctx := t.Context()

	// What docs/security.md says to do for a Prometheus: bind metrics-reader to its ServiceAccount.
	allowed, denied := tokenOf(t, env, "monitoring", "prometheus"), tokenOf(t, env, "monitoring", "other-app")
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "prometheus-reads-sluice-metrics"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: reader.GetName()},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: "monitoring", Name: "prometheus"}},
	}
	if err := env.Client.Create(ctx, binding); err != nil {
		t.Fatal(err)
	}

	args, vars := renderedManager(t, objs)
	addr := freeLoopbackAddr(t)
	m := startManager(t, kubeconfigWithToken(t, env, tokenOf(t, env, namespace, operatorSA)), outsideAPod(args, addr, "0"), vars)
	url := "https://" + addr + "/metrics"
	hc := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec // the manager's self-signed certificate, as the ServiceMonitor
	}
	eventually(t, time.Minute, "the metrics endpoint answers over HTTPS", func(ctx context.Context) (bool, string) {
		m.running(t)
		code, _, err := get(ctx, hc, url, "")
		return err == nil, fmt.Sprint(code, err)
	})

	for _, tc := range []struct {
		name, token string
		want        int // 0: any refusal
	}{
		{"no token", "", http.StatusUnauthorized},
		// The API server's TokenReview answers an error for what isn't a
		// token at all, which controller-runtime's filter reports as a 500.
		{"a token the API server didn't issue", "not-a-token", 0},
		{"a ServiceAccount without metrics-reader", denied, http.StatusForbidden},
		{"a ServiceAccount bound to metrics-reader", allowed, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, err := get(ctx, hc, url, tc.token)
			if err != nil {
				t.Fatal(err)
			}
			if code != tc.want && (tc.want != 0 || code < 400) {
				t.Fatalf("GET /metrics: %d %q, want %d", code, firstLines(body, 2), tc.want)
			}
			if code != http.StatusOK {
				if strings.Contains(body, "sluice_") {
					t.Errorf("a %d answer holds metrics:\n%s", code, firstLines(body, 3))
				}
				return
			}
			parser := expfmt.NewTextParser(model.UTF8Validation)
			families, err := parser.TextToMetricFamilies(strings.NewReader(body))
			if err != nil {
				t.Fatalf("the answer is not Prometheus text: %v\n%s", err, firstLines(body, 5))
			}
			for _, f := range []string{"sluice_kafka_clients", "rest_client_requests_total"} {
				if _, ok := families[f]; !ok {
					t.Errorf("the operator's metrics lack %s (%d families, e.g. %s)", f, len(families), someKeys(families))
				}
			}
		})
	}

	// The port speaks TLS only: a plain HTTP scrape gets Go's "HTTP request to
	// an HTTPS server" 400, never the metrics.
	plain := &http.Client{Timeout: 10 * time.Second}
	code, body, err := get(ctx, plain, "http://"+addr+"/metrics", allowed)
	if err == nil && (code == http.StatusOK || strings.Contains(body, "sluice_")) {
		t.Errorf("plain HTTP GET /metrics: %d, with metrics:\n%s", code, firstLines(body, 3))
	}
	if lines := grepLines(m.log(t), "forbidden"); len(lines) > 0 {
		t.Errorf("the manager was refused what it asked the API server (%d lines), e.g.:\n%s", len(lines), lines[0])
	}
}

// get GETs url with token as the bearer (none if empty) and returns the status
// and body.
func get(ctx context.Context, hc *http.Client, url, token string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil && !errors.Is(err, io.EOF) {
		return resp.StatusCode, "", err
	}
	return resp.StatusCode, string(b), nil
}

func someKeys[V any](m map[string]V) string {
	var keys []string
	for k := range m {
		if keys = append(keys, k); len(keys) == 8 {
			break
		}
	}
	return strings.Join(keys, ", ")
}
