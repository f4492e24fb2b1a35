//go:build dashboard

package grafana_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/demo"
)

// The test's world: `make demo`'s (internal/demo: envtest's kube-apiserver
// and etcd, kfake, the operator in this process, the pod runner's real worker
// processes, the load generator with its poison pills, the HTTP receiver that
// fails now and then), plus two pipelines the test breaks on purpose so that
// the operator's error panels have something to show.
const (
	testNamespace = "demo"   // internal/demo's namespace
	healthy       = "orders" // the demo's pipeline
	// noSecret names a Secret that does not exist: each reconcile fails with
	// SecretNotFound (sluice_pipeline_reconcile_errors_total).
	noSecret = "orders-nosecret"
	// topicGone's source topic is deleted once the operator samples its lag:
	// the samples fail from then on (sluice_pipeline_lag_read_errors_total).
	topicGone = "orders-gone"

	scrapeInterval = time.Second
	// rateInterval stands in for Grafana's $__rate_interval: several scrapes.
	rateInterval = "10s"
	// loadFor is the demo's load: 75 s have the spike (the scale-up) at
	// 33-42 s, the sink's outage (the circuit breaker) at 22-26 s and failing
	// sink calls (retries, dead letters) from 15 s. The test ends as soon as
	// every check passed (about 40 s into the load); it gives up checkFor
	// after the demo started.
	loadFor  = 75 * time.Second
	checkFor = 3 * time.Minute
)

// wantLabelValues are, per metric, the values a label must have all at once
// on a query of that metric whose legend shows the label: the demo's load
// makes every outcome, both error classes and the replica states happen.
var wantLabelValues = map[string]map[string][]string{
	"sluice_worker_records_total":        {"outcome": {"processed", "retried", "dead_lettered"}},
	"sluice_worker_errors_total":         {"class": {"poison", "transient"}},
	"sluice_pipeline_replicas":           {"state": {"current", "ready"}},
	"sluice_worker_rebalances_total":     {"kind": {"assigned"}},
	"sluice_worker_commits_total":        {"result": {"succeeded"}},
	"controller_runtime_reconcile_total": {"result": {"success"}},
}

// TestDashboardOnARealPrometheus runs a Prometheus server (built from the Go
// module proxy, `make prometheus`) that scrapes the demo's operator and
// worker processes and evaluates config/prometheus/rules.yaml, and checks,
// while records, poison pills and sink failures flow, that every expression
// of config/grafana/sluice.json (every target of every panel, every
// annotation) returns at least one series with the labels its legend shows
// and for the pipeline it is about, that the namespace and pipeline variables
// list the demo's, that SluiceDeadLettersGrowing fires while the dead-letter
// queue grows, and that every rule evaluates without an error.
func TestDashboardOnARealPrometheus(t *testing.T) {
	promBin := prometheusTool(t, "PROMETHEUS", "prometheus")
	if dir, missing := demo.MissingEnvtestBinaries(); len(missing) > 0 {
		t.Fatalf("envtest binaries %v missing from %s: run `make envtest` (builds them from the Go module proxy)", missing, dir)
	}
	d := loadDashboard(t)

	// Kept when the test fails, for its logs; removed when it passes.
	work, err := os.MkdirTemp("", "sluice-dashboard-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs and data are in %s (demo.out, state/logs/operator.log, state/pods/, prometheus.log)", work)
			return
		}
		_ = os.RemoveAll(work)
	})
	targets := filepath.Join(work, "targets")
	if err := os.MkdirAll(targets, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{demo.OperatorTargetsFile, demo.WorkerTargetsFile} {
		if err := os.WriteFile(filepath.Join(targets, f), []byte("[]\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	operatorAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))

	prom := startPrometheus(t, promBin, work, targets)
	t.Logf("Prometheus %s (%s) at %s", prom.version(t), promBin, prom.url)

	ctx, stopDemo := context.WithCancel(context.Background())
	demoDone := make(chan error, 1)
	go func() { demoDone <- runDemo(ctx, work, operatorAddr, targets) }()
	demoStopped := false
	stop := func() {
		if demoStopped {
			return
		}
		demoStopped = true
		stopDemo()
		select {
		case err := <-demoDone:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("demo: %v", err)
			}
		case <-time.After(3 * time.Minute):
			t.Errorf("the demo did not stop within 3 minutes of being canceled")
		}
	}
	defer stop()
	defer func() {
		if t.Failed() {
			logTail(t, filepath.Join(work, "demo.out"), 3000)
			logTail(t, filepath.Join(work, "state", "logs", "operator.log"), 3000)
			logTail(t, filepath.Join(work, "prometheus.log"), 2000)
		}
	}()

	breakage, err := breakPipelines(ctx, t, filepath.Join(work, "state", "kubeconfig"), demoDone)
	if err != nil {
		t.Fatalf("setting up the broken pipelines: %v", err)
	}
	defer breakage.close()

	pipelines := []string{healthy, noSecret, topicGone}
	vars := testVariables(testNamespace, pipelines, rateInterval)
	checks := append(targetChecks(prom), variableChecks(d, prom)...)
	checks = append(checks, dashboardChecks(t, d, prom, vars)...)
	checks = append(checks, alertFiresWhileDeadLettersGrow(prom))

	deadline := time.Now().Add(checkFor)
	start := time.Now()
	for {
		breakage.step(ctx)
		pending := 0
		for _, c := range checks {
			if c.passed {
				continue
			}
			ok, detail := c.run(ctx)
			if ok {
				c.passed = true
				t.Logf("%5.1fs  ok  %s: %s", time.Since(start).Seconds(), c.name, detail)
				continue
			}
			c.failed(detail)
			pending++
		}
		if pending == 0 {
			break
		}
		select {
		case err := <-demoDone:
			demoStopped = true
			t.Fatalf("the demo ended before every check passed: %v\n%s", err, unmet(checks))
		case <-time.After(2 * time.Second):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d checks did not pass within %s:\n%s", pending, len(checks), checkFor, unmet(checks))
		}
	}
	if ok, detail := rulesEvaluate(ctx, prom); !ok {
		t.Errorf("rules: %s", detail)
	} else {
		t.Logf("rules: %s", detail)
	}
}

// check is one thing that must be true at least once during the run: an
// expression's result depends on the moment (a scale event shows for a
// minute, an increase only while a counter moves).
type check struct {
	name   string
	run    func(context.Context) (bool, string)
	passed bool
	// seen are the distinct reasons it failed, oldest first (the last may be
	// from a demo that is stopping).
	seen []string
}

func (c *check) failed(detail string) {
	if !slices.Contains(c.seen, detail) && len(c.seen) < 5 {
		c.seen = append(c.seen, detail)
	}
}

func unmet(checks []*check) string {
	var b strings.Builder
	for _, c := range checks {
		if !c.passed {
			fmt.Fprintf(&b, "  %s:\n", c.name)
			for _, s := range c.seen {
				fmt.Fprintf(&b, "    %s\n", s)
			}
		}
	}
	return b.String()
}

// dashboardChecks are one check per query of the dashboard.
func dashboardChecks(t *testing.T, d dashboard, prom *prometheus, vars map[string]string) []*check {
	t.Helper()
	var out []*check
	for _, q := range queries(d) {
		expr, err := substitute(q.Expr, vars)
		if err != nil {
			t.Fatalf("%s: %v", q.Where, err)
		}
		want := expectedPipeline(q.Expr)
		labels := legendLabels(q.Legend)
		values := map[string][]string{}
		for metric, byLabel := range wantLabelValues {
			if !strings.Contains(q.Expr, metric) {
				continue
			}
			for l, v := range byLabel {
				if slices.Contains(labels, l) {
					values[l] = v
				}
			}
		}
		out = append(out, &check{name: q.Where, run: func(ctx context.Context) (bool, string) {
			series, err := prom.query(ctx, expr)
			if err != nil {
				return false, err.Error()
			}
			return seriesAsExpected(series, labels, values, want)
		}})
	}
	return out
}

// expectedPipeline is the pipeline a query must show: the healthy one, except
// on the panels of operator errors, which only the broken pipelines have.
func expectedPipeline(expr string) string {
	switch {
	case !strings.Contains(expr, "$pipeline"):
		return ""
	case strings.Contains(expr, "sluice_pipeline_reconcile_errors_total"):
		return noSecret
	case strings.Contains(expr, "sluice_pipeline_lag_read_errors_total"):
		return topicGone
	}
	return healthy
}

// seriesAsExpected: at least one series; every series has each label its
// legend shows, in the test's namespace; the labels in values have all
// their values; one series is for the pipeline wanted and has a value a
// panel can draw.
func seriesAsExpected(series []sample, labels []string, values map[string][]string, wantPipeline string) (bool, string) {
	if len(series) == 0 {
		return false, "no series"
	}
	for _, s := range series {
		for _, l := range labels {
			if s.Metric[l] == "" {
				return false, fmt.Sprintf("series %v has no label %q, which the legend shows", s.Metric, l)
			}
		}
		if ns, ok := s.Metric["namespace"]; ok && ns != testNamespace {
			return false, fmt.Sprintf("series %v is not in namespace %s", s.Metric, testNamespace)
		}
	}
	for l, want := range values {
		for _, v := range want {
			if !slices.ContainsFunc(series, func(s sample) bool { return s.Metric[l] == v }) {
				return false, fmt.Sprintf("no series with %s=%q yet: %v", l, v, series)
			}
		}
	}
	for _, s := range series {
		if wantPipeline != "" && s.Metric["pipeline"] != wantPipeline {
			continue
		}
		if math.IsNaN(s.Value) || math.IsInf(s.Value, 0) {
			continue
		}
		return true, fmt.Sprintf("%d series, e.g. %v = %g", len(series), s.Metric, s.Value)
	}
	return false, fmt.Sprintf("%d series, none for pipeline %q with a finite value: %v", len(series), wantPipeline, series)
}

// variableChecks run the namespace and pipeline variables' label_values
// queries as Grafana does, through the label values API.
func variableChecks(d dashboard, prom *prometheus) []*check {
	want := map[string][]string{"namespace": {testNamespace}, "pipeline": {healthy, noSecret, topicGone}}
	var out []*check
	for _, v := range d.Templating.List {
		m := labelValuesRE.FindStringSubmatch(v.queryText())
		if v.Type != "query" || m == nil {
			continue
		}
		match := m[1] + strings.ReplaceAll(m[2], "$namespace", testNamespace)
		label := m[3]
		out = append(out, &check{name: "variable " + v.Name, run: func(ctx context.Context) (bool, string) {
			values, err := prom.labelValues(ctx, label, match)
			if err != nil {
				return false, err.Error()
			}
			for _, w := range want[v.Name] {
				if !slices.Contains(values, w) {
					return false, fmt.Sprintf("label_values(%s, %s) = %v, without %s", match, label, values, w)
				}
			}
			return true, fmt.Sprintf("label_values(%s, %s) = %v", match, label, values)
		}})
	}
	return out
}

// targetChecks: Prometheus scrapes the operator and the workers.
func targetChecks(prom *prometheus) []*check {
	return []*check{{name: "scrape targets up", run: func(ctx context.Context) (bool, string) {
		var resp struct {
			ActiveTargets []struct {
				Labels    map[string]string `json:"labels"`
				ScrapeURL string            `json:"scrapeUrl"`
				Health    string            `json:"health"`
				LastError string            `json:"lastError"`
			} `json:"activeTargets"`
		}
		if err := prom.get(ctx, "/api/v1/targets", nil, &resp); err != nil {
			return false, err.Error()
		}
		up := map[string]int{}
		var seen []string
		for _, tg := range resp.ActiveTargets {
			seen = append(seen, fmt.Sprintf("%s %s %s %s", tg.Labels["job"], tg.ScrapeURL, tg.Health, tg.LastError))
			if tg.Health == "up" && (tg.Labels["job"] == operatorJob || tg.Labels["pipeline"] == healthy) {
				up[tg.Labels["job"]]++
			}
		}
		if up[operatorJob] == 0 || up[workerJob] == 0 {
			return false, fmt.Sprintf("up: %v; targets: %v", up, seen)
		}
		return true, fmt.Sprintf("up: %v", up)
	}}}
}

// alertFiresWhileDeadLettersGrow: SluiceDeadLettersGrowing (no `for`: it fires
// at the first evaluation that sees the DLQ grow) is firing for the healthy
// pipeline, whose poison pills keep reaching the DLQ, and the DLQ is growing
// at that moment.
func alertFiresWhileDeadLettersGrow(prom *prometheus) *check {
	const alert = "SluiceDeadLettersGrowing"
	growing := fmt.Sprintf(`delta(sluice_pipeline_dead_letter_records{namespace=%q, pipeline=%q}[30s]) > 0`, testNamespace, healthy)
	return &check{name: "alert " + alert + " fires while dead letters grow", run: func(ctx context.Context) (bool, string) {
		var resp struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
				Value  string            `json:"value"`
			} `json:"alerts"`
		}
		if err := prom.get(ctx, "/api/v1/alerts", nil, &resp); err != nil {
			return false, err.Error()
		}
		var states []string
		firing := ""
		for _, a := range resp.Alerts {
			states = append(states, fmt.Sprintf("%s{%s/%s}=%s", a.Labels["alertname"], a.Labels["namespace"], a.Labels["pipeline"], a.State))
			if a.Labels["alertname"] == alert && a.Labels["namespace"] == testNamespace && a.Labels["pipeline"] == healthy && a.State == "firing" {
				firing = a.Value
			}
		}
		if firing == "" {
			return false, fmt.Sprintf("not firing; alerts: %v", states)
		}
		series, err := prom.query(ctx, growing)
		if err != nil {
			return false, err.Error()
		}
		if len(series) == 0 {
			return false, "firing, but the DLQ did not grow in the last 30s"
		}
		return true, fmt.Sprintf("firing with value %s; the DLQ grew by %.0f in 30s", firing, series[0].Value)
	}}
}

// rulesEvaluate: every rule of rules.yaml is loaded and evaluates without an
// error (most are healthy-pipeline silent, which is also "ok").
func rulesEvaluate(ctx context.Context, prom *prometheus) (bool, string) {
	var resp struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Name      string `json:"name"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
				State     string `json:"state"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := prom.get(ctx, "/api/v1/rules", nil, &resp); err != nil {
		return false, err.Error()
	}
	n := 0
	var bad, states []string
	for _, g := range resp.Groups {
		for _, r := range g.Rules {
			n++
			states = append(states, r.Name+"="+r.State)
			if r.Health != "ok" {
				bad = append(bad, fmt.Sprintf("%s/%s: health %s %s", g.Name, r.Name, r.Health, r.LastError))
			}
		}
	}
	if n == 0 {
		return false, "no rules loaded"
	}
	if len(bad) > 0 {
		return false, strings.Join(bad, "; ")
	}
	return true, fmt.Sprintf("%d rules evaluate: %s", n, strings.Join(states, ", "))
}

// runDemo runs internal/demo with the operator's metrics on operatorAddr and
// file_sd targets in targets, until ctx ends.
func runDemo(ctx context.Context, work, operatorAddr, targets string) error {
	var cfg demo.Config
	fs := flag.NewFlagSet("sluice-demo", flag.ContinueOnError)
	cfg.BindFlags(fs)
	if err := fs.Parse(nil); err != nil {
		return err
	}
	cfg.Duration = loadFor
	cfg.StateDir = filepath.Join(work, "state")
	cfg.Plain = true
	cfg.MetricsBindAddress = operatorAddr
	cfg.ScrapeTargets = targets
	out, err := os.Create(filepath.Join(work, "demo.out"))
	if err != nil {
		return err
	}
	defer func() { _ = out.Close() }()
	_, err = demo.Run(ctx, cfg, out)
	return err
}

// breakage is the two broken pipelines and the test's Kafka admin client.
type breakage struct {
	c       client.Client
	kafka   *kgo.Client
	admin   *kadm.Client
	deleted bool
	t       *testing.T
}

func (b *breakage) close() { b.kafka.Close() }

// breakPipelines waits for the demo's API server and pipeline, creates the
// source topic of topicGone and applies the two broken pipelines, as a user
// would with kubectl.
func breakPipelines(ctx context.Context, t *testing.T, kubeconfig string, demoDone <-chan error) (*breakage, error) {
	c, err := waitForClient(ctx, kubeconfig, demoDone)
	if err != nil {
		return nil, err
	}
	sp := &sluicev1.StreamPipeline{}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		err := c.Get(ctx, client.ObjectKey{Namespace: testNamespace, Name: healthy}, sp)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the demo applied no StreamPipeline %s/%s: %w", testNamespace, healthy, err)
		}
		select {
		case err := <-demoDone:
			return nil, fmt.Errorf("the demo ended: %w", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	brokers := sp.Spec.Kafka.BootstrapServers
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, err
	}
	b := &breakage{c: c, kafka: cl, admin: kadm.NewClient(cl), t: t}
	if _, err := b.admin.CreateTopic(ctx, 3, -1, nil, topicGone); err != nil {
		b.close()
		return nil, fmt.Errorf("create topic %s: %w", topicGone, err)
	}
	quoted := make([]string, len(brokers))
	for i, s := range brokers {
		quoted[i] = strconv.Quote(s)
	}
	bootstrap := "[" + strings.Join(quoted, ", ") + "]"
	for _, manifest := range []string{
		fmt.Sprintf(`apiVersion: streaming.sluice.dev/v1alpha1
kind: StreamPipeline
metadata: {name: %s, namespace: %s}
spec:
  kafka:
    bootstrapServers: %s
    sasl: {mechanism: SCRAM-SHA-512, secretRef: {name: kafka-user-that-does-not-exist}}
  source: {topic: %s}
  sink: {log: {}}
`, noSecret, testNamespace, bootstrap, healthy),
		fmt.Sprintf(`apiVersion: streaming.sluice.dev/v1alpha1
kind: StreamPipeline
metadata: {name: %s, namespace: %s}
spec:
  kafka: {bootstrapServers: %s}
  source: {topic: %s}
  sink: {log: {}}
  scaling: {minReplicas: 0, pollInterval: 1s}
`, topicGone, testNamespace, bootstrap, topicGone),
	} {
		p := &sluicev1.StreamPipeline{}
		if err := yaml.UnmarshalStrict([]byte(manifest), p); err != nil {
			b.close()
			return nil, fmt.Errorf("%w:\n%s", err, manifest)
		}
		if err := c.Create(ctx, p); err != nil {
			b.close()
			return nil, fmt.Errorf("apply %s: %w", p.Name, err)
		}
	}
	return b, nil
}

// step deletes topicGone's source topic once the operator has provisioned its
// topics and sampled its lag: from then on its lag samples fail.
func (b *breakage) step(ctx context.Context) {
	if b.deleted {
		return
	}
	sp := &sluicev1.StreamPipeline{}
	if err := b.c.Get(ctx, client.ObjectKey{Namespace: testNamespace, Name: topicGone}, sp); err != nil {
		return
	}
	if !meta.IsStatusConditionTrue(sp.Status.Conditions, sluicev1.ConditionTopicsReady) || sp.Status.Lag == nil {
		return
	}
	resp, err := b.admin.DeleteTopics(ctx, topicGone)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		b.t.Logf("delete topic %s: %v (tried again)", topicGone, err)
		return
	}
	b.deleted = true
	b.t.Logf("deleted the source topic of %s/%s: its lag samples fail from now on", testNamespace, topicGone)
}

// waitForClient waits for the demo's kubeconfig and returns a client of its
// API server.
func waitForClient(ctx context.Context, kubeconfig string, demoDone <-chan error) (client.Client, error) {
	deadline := time.Now().Add(5 * time.Minute) // a first run builds the worker binary meanwhile
	for {
		b, err := os.ReadFile(kubeconfig)
		if err == nil && len(b) > 0 {
			cfg, err := clientcmd.RESTConfigFromKubeConfig(b)
			if err != nil {
				return nil, err
			}
			scheme := runtime.NewScheme()
			if err := clientgoscheme.AddToScheme(scheme); err != nil {
				return nil, err
			}
			if err := sluicev1.AddToScheme(scheme); err != nil {
				return nil, err
			}
			return client.New(cfg, client.Options{Scheme: scheme})
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no kubeconfig at %s after 5 minutes", kubeconfig)
		}
		select {
		case err := <-demoDone:
			return nil, fmt.Errorf("the demo ended: %w", err)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

const (
	operatorJob = "sluice-operator"
	workerJob   = "sluice-workers"
)

// prometheus is a running Prometheus server.
type prometheus struct {
	url  string
	http *http.Client
}

// startPrometheus writes a config that scrapes the demo's file_sd targets the
// way config/prometheus's monitors scrape a cluster (their honorLabels and
// metricRelabelings; the demo's targets already carry the namespace, pipeline
// and pod labels the PodMonitor's relabelings give), loads rules.yaml's groups,
// and starts the server on a loopback port with a fresh data folder. It stops
// when the test ends.
func startPrometheus(t *testing.T, bin, work, targets string) *prometheus {
	t.Helper()
	root := repoRoot(t)
	operatorEP := monitorEndpoint(t, filepath.Join(root, "config", "prometheus", "monitor.yaml"), "endpoints")
	workerEP := monitorEndpoint(t, filepath.Join(root, "config", "prometheus", "worker_podmonitor.yaml"), "podMetricsEndpoints")
	scrape := func(job, file string, ep map[string]any) map[string]any {
		honor, _ := ep["honorLabels"].(bool)
		path, _ := ep["path"].(string)
		return map[string]any{
			"job_name":               job,
			"honor_labels":           honor,
			"metrics_path":           path,
			"file_sd_configs":        []any{map[string]any{"files": []string{filepath.Join(targets, file)}, "refresh_interval": "1s"}},
			"metric_relabel_configs": relabelConfigs(t, ep["metricRelabelings"]),
		}
	}
	cfg := map[string]any{
		"global": map[string]any{
			"scrape_interval":     scrapeInterval.String(),
			"scrape_timeout":      scrapeInterval.String(),
			"evaluation_interval": scrapeInterval.String(),
		},
		"rule_files": []string{plainRules(t, work)},
		"scrape_configs": []any{
			scrape(operatorJob, demo.OperatorTargetsFile, operatorEP),
			scrape(workerJob, demo.WorkerTargetsFile, workerEP),
		},
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(work, "prometheus.yml")
	if err := os.WriteFile(cfgFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(work, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	cmd := exec.Command(bin,
		"--config.file="+cfgFile,
		"--storage.tsdb.path="+filepath.Join(work, "prometheus-data"),
		"--web.listen-address="+addr,
		"--storage.tsdb.retention.time=1d",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // dies with a killed test
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	var exitErr error
	exited := make(chan struct{})
	go func() { exitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			t.Errorf("prometheus did not stop within 15 s of SIGTERM: killed")
			_ = cmd.Process.Kill()
			<-exited
		}
		_ = logf.Close()
	})
	p := &prometheus{url: "http://" + addr, http: &http.Client{Timeout: 10 * time.Second}}
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := p.http.Get(p.url + "/-/ready")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-exited:
			logTail(t, filepath.Join(work, "prometheus.log"), 3000)
			t.Fatalf("prometheus exited: %v\nconfig:\n%s", exitErr, b)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus at %s not ready within a minute", addr)
		}
	}
}

// monitorEndpoint is the first scrape endpoint of a ServiceMonitor or
// PodMonitor, decoded generically.
func monitorEndpoint(t *testing.T, file, field string) map[string]any {
	t.Helper()
	var raw struct {
		Spec map[string]json.RawMessage `json:"spec"`
	}
	if err := yaml.Unmarshal(readFile(t, file), &raw); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var eps []map[string]any
	if err := json.Unmarshal(raw.Spec[field], &eps); err != nil || len(eps) == 0 {
		t.Fatalf("%s: spec.%s: %v (%d endpoints)", file, field, err, len(eps))
	}
	return eps[0]
}

// relabelConfigs turns the Prometheus Operator's relabelings (camelCase) into
// Prometheus's relabel_configs (snake_case).
func relabelConfigs(t *testing.T, v any) []any {
	t.Helper()
	list, _ := v.([]any)
	keys := map[string]string{
		"sourceLabels": "source_labels", "targetLabel": "target_label", "separator": "separator",
		"regex": "regex", "replacement": "replacement", "action": "action", "modulus": "modulus",
	}
	out := []any{}
	for _, item := range list {
		in, _ := item.(map[string]any)
		r := map[string]any{}
		for k, val := range in {
			pk, ok := keys[k]
			if !ok {
				t.Fatalf("relabeling field %q: not one the test translates", k)
			}
			r[pk] = val
		}
		out = append(out, r)
	}
	return out
}

// plainRules writes rules.yaml's groups as the plain rule file Prometheus
// reads (the PrometheusRule is the Prometheus Operator's wrapper around it).
func plainRules(t *testing.T, dir string) string {
	t.Helper()
	var pr struct {
		Spec struct {
			Groups []any `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(readFile(t, repoRoot(t), "config", "prometheus", "rules.yaml"), &pr); err != nil {
		t.Fatal(err)
	}
	if len(pr.Spec.Groups) == 0 {
		t.Fatal("config/prometheus/rules.yaml has no spec.groups")
	}
	b, err := yaml.Marshal(map[string]any{"groups": pr.Spec.Groups})
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, "rules.yml")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// sample is one series of an instant vector.
type sample struct {
	Metric map[string]string
	Value  float64
}

func (p *prometheus) query(ctx context.Context, expr string) ([]sample, error) {
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	if err := p.get(ctx, "/api/v1/query", url.Values{"query": {expr}}, &data); err != nil {
		return nil, err
	}
	if data.ResultType != "vector" {
		return nil, fmt.Errorf("result type %s, want vector", data.ResultType)
	}
	out := make([]sample, 0, len(data.Result))
	for _, r := range data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("value %v: %w", r.Value, err)
		}
		out = append(out, sample{Metric: r.Metric, Value: v})
	}
	return out, nil
}

func (p *prometheus) labelValues(ctx context.Context, label, match string) ([]string, error) {
	var values []string
	err := p.get(ctx, "/api/v1/label/"+url.PathEscape(label)+"/values", url.Values{"match[]": {match}}, &values)
	return values, err
}

func (p *prometheus) version(t *testing.T) string {
	t.Helper()
	var info struct {
		Version string `json:"version"`
	}
	if err := p.get(t.Context(), "/api/v1/status/buildinfo", nil, &info); err != nil {
		return "(" + err.Error() + ")"
	}
	if info.Version == "" {
		return "(go install leaves the version out of its build info)"
	}
	return info.Version
}

// get calls the HTTP API and decodes its data field.
func (p *prometheus) get(ctx context.Context, path string, params url.Values, data any) error {
	u := p.url + path
	if len(params) > 0 {
		u += "?" + params.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	var env struct {
		Status    string          `json:"status"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
		Data      json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		return fmt.Errorf("%s: HTTP %d: %w", path, resp.StatusCode, err)
	}
	if env.Status != "success" {
		return fmt.Errorf("%s: %s: %s", path, env.ErrorType, env.Error)
	}
	return json.Unmarshal(env.Data, data)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port
}

func logTail(t *testing.T, path string, n int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Logf("%s: %v", path, err)
		return
	}
	if len(b) > n {
		b = b[len(b)-n:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	t.Logf("--- end of %s ---\n%s", path, b)
}
