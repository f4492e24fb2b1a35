// Package prometheus_test keeps config/prometheus honest: the alerts use only
// metrics Sluice defines, each has a severity, a summary, a description and a
// runbook that exists, and the monitors scrape the ports and pods the operator
// and the workers actually have.
package prometheus_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/modroot"
	"github.com/sluice-dev/sluice/internal/render"
)

const runbookBase = "https://github.com/sluice-dev/sluice/blob/main/docs/runbooks/"

// operatorGroup holds the alerts about the operator itself: they have no
// pipeline to name, and they watch controller-runtime's metrics of the
// StreamPipeline controller.
const operatorGroup = "sluice.operator"

// The files that define metric names, relative to the module root.
var metricSources = []string{"controllers/metrics.go", "worker/metrics.go"}

type prometheusRule struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Groups []struct {
			Name     string `json:"name"`
			Interval string `json:"interval,omitempty"`
			Rules    []rule `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

type rule struct {
	// group is the rule's group; the alerts of operatorGroup are about the
	// operator, not a pipeline.
	group         string
	Alert         string            `json:"alert,omitempty"`
	Record        string            `json:"record,omitempty"`
	Expr          string            `json:"expr"`
	For           string            `json:"for,omitempty"`
	KeepFiringFor string            `json:"keep_firing_for,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

func root(t *testing.T) string {
	t.Helper()
	dir, err := modroot.Find()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func readFile(t *testing.T, path ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(path...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rules parses rules.yaml strictly, so a misspelt field fails here rather than
// being ignored by the Prometheus Operator.
func rules(t *testing.T) []rule {
	t.Helper()
	var pr prometheusRule
	if err := yaml.UnmarshalStrict(readFile(t, "rules.yaml"), &pr); err != nil {
		t.Fatalf("rules.yaml: %v", err)
	}
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" {
		t.Fatalf("rules.yaml is a %s %s, want a monitoring.coreos.com/v1 PrometheusRule", pr.APIVersion, pr.Kind)
	}
	var all []rule
	for _, g := range pr.Spec.Groups {
		if len(g.Rules) == 0 {
			t.Errorf("group %q has no rules", g.Name)
		}
		for _, r := range g.Rules {
			r.group = g.Name
			all = append(all, r)
		}
	}
	if len(all) == 0 {
		t.Fatal("rules.yaml has no rules")
	}
	return all
}

var durationRE = regexp.MustCompile(`^([0-9]+(ms|s|m|h|d|w|y))+$`)

func TestEveryAlertHasSeveritySummaryDescriptionAndRunbook(t *testing.T) {
	dir := root(t)
	seen := map[string]bool{}
	for _, r := range rules(t) {
		if r.Alert == "" {
			continue
		}
		if seen[r.Alert] {
			t.Errorf("alert %s is defined twice", r.Alert)
		}
		seen[r.Alert] = true
		if !slices.Contains([]string{"critical", "warning", "info"}, r.Labels["severity"]) {
			t.Errorf("%s: severity %q, want critical, warning or info", r.Alert, r.Labels["severity"])
		}
		for _, d := range []string{r.For, r.KeepFiringFor} {
			if d != "" && !durationRE.MatchString(d) {
				t.Errorf("%s: %q is not a Prometheus duration", r.Alert, d)
			}
		}
		for _, a := range []string{"summary", "description"} {
			v := strings.TrimSpace(r.Annotations[a])
			if v == "" {
				t.Errorf("%s: no %s annotation", r.Alert, a)
			} else if r.group != operatorGroup && !strings.Contains(v, "{{ $labels.namespace }}/{{ $labels.pipeline }}") {
				t.Errorf("%s: the %s does not name the pipeline as {{ $labels.namespace }}/{{ $labels.pipeline }}", r.Alert, a)
			}
		}
		if want := runbookBase + r.Alert + ".md"; r.Annotations["runbook_url"] != want {
			t.Errorf("%s: runbook_url %q, want %q", r.Alert, r.Annotations["runbook_url"], want)
		}
		rb, err := os.ReadFile(filepath.Join(dir, "docs", "runbooks", r.Alert+".md"))
		if err != nil {
			t.Errorf("%s: no runbook: %v", r.Alert, err)
			continue
		}
		if first, _, _ := strings.Cut(string(rb), "\n"); first != "# "+r.Alert {
			t.Errorf("docs/runbooks/%s.md starts with %q, want the heading %q", r.Alert, first, "# "+r.Alert)
		}
	}

	// The runbook folder holds exactly the alerts' runbooks, and its index links each.
	index := string(readFile(t, dir, "docs", "runbooks", "README.md"))
	entries, err := os.ReadDir(filepath.Join(dir, "docs", "runbooks"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".md")
		if !ok || name == "README" {
			continue
		}
		if !seen[name] {
			t.Errorf("docs/runbooks/%s has no alert in config/prometheus/rules.yaml", e.Name())
		}
	}
	for alert := range seen {
		if !strings.Contains(index, "("+alert+".md)") {
			t.Errorf("docs/runbooks/README.md does not link %s.md", alert)
		}
	}
}

var (
	metricNameRE = regexp.MustCompile(`sluice_[a-z_]+`)
	quotedNameRE = regexp.MustCompile(`"(sluice_[a-z_]+)"`)
)

// definedMetrics are the metric names the code defines: the string constants
// of the metric sources.
func definedMetrics(t *testing.T, dir string) map[string]string {
	t.Helper()
	defined := map[string]string{}
	for _, src := range metricSources {
		for _, m := range quotedNameRE.FindAllStringSubmatch(string(readFile(t, dir, src)), -1) {
			defined[m[1]] = src
		}
	}
	return defined
}

func TestExpressionsUseOnlyMetricsSluiceDefines(t *testing.T) {
	dir := root(t)
	defined := definedMetrics(t, dir)
	if len(defined) == 0 {
		t.Fatalf("no metric names found in %v", metricSources)
	}
	// franz-go's client metrics are registered under a namespace (kprom), not
	// one name at a time.
	kprom := strings.Contains(string(readFile(t, dir, "worker", "clients.go")), `"sluice_worker_kafka"`)
	controller := controllerName(t, dir)
	for _, r := range rules(t) {
		name := r.Alert + r.Record
		if r.group == operatorGroup {
			want := fmt.Sprintf(`controller_runtime_reconcile_total{controller=%q}`, controller)
			if !strings.Contains(r.Expr, want) {
				t.Errorf("%s: the operator's alert does not watch %s", name, want)
			}
			continue
		}
		used := metricNameRE.FindAllString(r.Expr, -1)
		if len(used) == 0 {
			t.Errorf("%s: the expression uses no Sluice metric", name)
		}
		for _, m := range used {
			if _, ok := defined[m]; ok {
				continue
			}
			if base, ok := histogramBase(m); ok {
				if _, ok := defined[base]; ok {
					continue
				}
			}
			if kprom && strings.HasPrefix(m, "sluice_worker_kafka_") {
				continue
			}
			t.Errorf("%s: the expression uses %s, which neither %s defines", name, m, strings.Join(metricSources, " nor "))
		}
	}
}

// controllerName is the name the StreamPipeline controller registers with
// controller-runtime (its metrics' controller label).
func controllerName(t *testing.T, dir string) string {
	t.Helper()
	m := regexp.MustCompile(`Named\("([^"]+)"\)`).FindSubmatch(readFile(t, dir, "controllers", "streampipeline_controller.go"))
	if m == nil {
		t.Fatal("controllers/streampipeline_controller.go names no controller")
	}
	return string(m[1])
}

func histogramBase(m string) (string, bool) {
	for _, s := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(m, s); ok {
			return base, true
		}
	}
	return "", false
}

var (
	byRE        = regexp.MustCompile(`\bby\s*\(([^)]*)\)`)
	labelsUseRE = regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)`)
)

// An annotation that uses a label the expression aggregated away renders it
// empty. Every "by" of an alert's expression must keep the labels its
// annotations use.
func TestAnnotationsUseLabelsTheExpressionKeeps(t *testing.T) {
	for _, r := range rules(t) {
		if r.Alert == "" {
			continue
		}
		used := map[string]bool{}
		for _, a := range r.Annotations {
			for _, m := range labelsUseRE.FindAllStringSubmatch(a, -1) {
				used[m[1]] = true
			}
		}
		for _, by := range byRE.FindAllStringSubmatch(r.Expr, -1) {
			var kept []string
			for l := range strings.SplitSeq(by[1], ",") {
				kept = append(kept, strings.TrimSpace(l))
			}
			for l := range used {
				if !slices.Contains(kept, l) {
					t.Errorf("%s: the annotations use $labels.%s, which %q drops", r.Alert, l, by[0])
				}
			}
		}
	}
}

// Every metric the code defines is documented: the operator's in
// docs/metrics.md, the worker's in docs/worker.md.
func TestEveryMetricIsDocumented(t *testing.T) {
	dir := root(t)
	docs := map[string]string{
		"controllers/metrics.go": "docs/metrics.md",
		"worker/metrics.go":      "docs/worker.md",
	}
	for m, src := range definedMetrics(t, dir) {
		doc := docs[src]
		if !strings.Contains(string(readFile(t, dir, doc)), "`"+m) {
			t.Errorf("%s (%s) is not documented in %s", m, src, doc)
		}
	}
}

// Just enough of the Service, the monitors and the manager Deployment to check
// what they point at.
type object struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		// A map in a Service, a label selector in a monitor.
		Selector          any           `json:"selector"`
		Ports             []servicePort `json:"ports"`
		NamespaceSelector struct {
			Any bool `json:"any"`
		} `json:"namespaceSelector"`
		Endpoints           []endpoint `json:"endpoints"`
		PodMetricsEndpoints []endpoint `json:"podMetricsEndpoints"`
		Template            struct {
			Metadata struct {
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
			Spec struct {
				Containers []container `json:"containers"`
			} `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
}

type servicePort struct {
	Name       string `json:"name"`
	Port       int32  `json:"port"`
	TargetPort any    `json:"targetPort"`
}

type container struct {
	Name  string   `json:"name"`
	Args  []string `json:"args"`
	Ports []struct {
		Name          string `json:"name"`
		ContainerPort int32  `json:"containerPort"`
	} `json:"ports"`
}

type endpoint struct {
	Port            string       `json:"port"`
	Path            string       `json:"path"`
	Scheme          string       `json:"scheme"`
	BearerTokenFile string       `json:"bearerTokenFile"`
	HonorLabels     bool         `json:"honorLabels"`
	Relabelings     []relabeling `json:"relabelings"`
}

type relabeling struct {
	SourceLabels []string `json:"sourceLabels"`
	TargetLabel  string   `json:"targetLabel"`
	Action       string   `json:"action"`
}

type labelSelector struct {
	MatchLabels      map[string]string `json:"matchLabels"`
	MatchExpressions []struct {
		Key      string   `json:"key"`
		Operator string   `json:"operator"`
		Values   []string `json:"values"`
	} `json:"matchExpressions"`
}

// matches is Kubernetes' label selector semantics; an empty selector matches
// nothing here, since selecting everything is never what a monitor wants.
func (s labelSelector) matches(l map[string]string) bool {
	if len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0 {
		return false
	}
	if !subset(s.MatchLabels, l) {
		return false
	}
	for _, e := range s.MatchExpressions {
		v, ok := l[e.Key]
		var m bool
		switch e.Operator {
		case "In":
			m = ok && slices.Contains(e.Values, v)
		case "NotIn":
			m = !ok || !slices.Contains(e.Values, v)
		case "Exists":
			m = ok
		case "DoesNotExist":
			m = !ok
		}
		if !m {
			return false
		}
	}
	return true
}

// convert re-decodes a generically decoded value into a typed one.
func convert(t *testing.T, from, to any) {
	t.Helper()
	b, err := yaml.Marshal(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, to); err != nil {
		t.Fatal(err)
	}
}

// objects reads the objects of YAML files (multi-document ones too) by kind.
func objects(t *testing.T, files ...string) map[string]object {
	t.Helper()
	objs := map[string]object{}
	for _, f := range files {
		for doc := range strings.SplitSeq(string(readFile(t, f)), "\n---\n") {
			var o object
			if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if o.Kind != "" {
				objs[o.Kind] = o
			}
		}
	}
	return objs
}

func subset(sub, super map[string]string) bool {
	for k, v := range sub {
		if w, ok := super[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(readFile(t, "kustomization.yaml"), &k); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files = slices.DeleteFunc(files, func(f string) bool { return f == "kustomization.yaml" })
	slices.Sort(files)
	if res := slices.Sorted(slices.Values(k.Resources)); !slices.Equal(files, res) {
		t.Errorf("kustomization.yaml lists %v; the folder has %v", res, files)
	}
}

// The PodMonitor selects the pods internal/render labels, scrapes the port the
// worker serves /metrics on, and takes namespace and pipeline from Kubernetes.
func TestPodMonitorMatchesTheWorkerPods(t *testing.T) {
	pm, ok := objects(t, "worker_podmonitor.yaml")["PodMonitor"]
	if !ok {
		t.Fatal("worker_podmonitor.yaml holds no PodMonitor")
	}
	sp := &sluicev1.StreamPipeline{}
	sp.Name, sp.Namespace = "orders", "shop"
	podLabels := render.Labels(sp)

	if !pm.Spec.NamespaceSelector.Any {
		t.Error("the PodMonitor must look in every namespace (namespaceSelector.any): pipelines live in their teams' namespaces")
	}
	var sel labelSelector
	convert(t, pm.Spec.Selector, &sel)
	if !sel.matches(podLabels) {
		t.Errorf("the PodMonitor selector %+v does not match the worker pod labels %v", sel, podLabels)
	}
	delete(podLabels, sluicev1.LabelPipeline)
	if sel.matches(podLabels) {
		t.Errorf("the PodMonitor selector %+v matches pods without the %s label", sel, sluicev1.LabelPipeline)
	}

	if len(pm.Spec.PodMetricsEndpoints) != 1 {
		t.Fatalf("want one podMetricsEndpoint, got %d", len(pm.Spec.PodMetricsEndpoints))
	}
	ep := pm.Spec.PodMetricsEndpoints[0]
	if ep.Port != render.HealthPortName || ep.Path != "/metrics" {
		t.Errorf("the PodMonitor scrapes port %q path %q; the worker serves /metrics on port %q", ep.Port, ep.Path, render.HealthPortName)
	}
	want := map[string]string{
		"namespace": "__meta_kubernetes_namespace",
		"pipeline":  "__meta_kubernetes_pod_label_" + regexp.MustCompile(`[^a-zA-Z0-9_]`).ReplaceAllString(sluicev1.LabelPipeline, "_"),
	}
	for target, source := range want {
		if !slices.ContainsFunc(ep.Relabelings, func(r relabeling) bool {
			return r.TargetLabel == target && slices.Equal(r.SourceLabels, []string{source}) && (r.Action == "" || r.Action == "replace")
		}) {
			t.Errorf("the PodMonitor does not set %q from %s", target, source)
		}
	}
}

// The Service selects the operator's pods and exposes its metrics port; the
// ServiceMonitor selects the Service and scrapes that port.
func TestServiceMonitorReachesTheOperatorMetrics(t *testing.T) {
	dir := root(t)
	objs := objects(t, "metrics_service.yaml", "monitor.yaml", filepath.Join(dir, "config", "manager", "manager.yaml"))
	svc, sm, deploy := objs["Service"], objs["ServiceMonitor"], objs["Deployment"]
	if deploy.Kind == "" || svc.Kind == "" || sm.Kind == "" {
		t.Fatal("want a Deployment (config/manager/manager.yaml), a Service (metrics_service.yaml) and a ServiceMonitor (monitor.yaml)")
	}

	var svcSel map[string]string
	convert(t, svc.Spec.Selector, &svcSel)
	if len(svcSel) == 0 || !subset(svcSel, deploy.Spec.Template.Metadata.Labels) {
		t.Errorf("the Service selector %v does not select the operator pods %v", svcSel, deploy.Spec.Template.Metadata.Labels)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "metrics" {
		t.Fatalf("the Service must have one port, named metrics: %+v", svc.Spec.Ports)
	}
	port := svc.Spec.Ports[0]

	i := slices.IndexFunc(deploy.Spec.Template.Spec.Containers, func(c container) bool { return c.Name == "manager" })
	if i < 0 {
		t.Fatal("config/manager/manager.yaml has no manager container")
	}
	manager := deploy.Spec.Template.Spec.Containers[i]
	var containerPort int32
	for _, p := range manager.Ports {
		if p.Name == port.TargetPort {
			containerPort = p.ContainerPort
		}
	}
	if containerPort == 0 {
		t.Fatalf("the Service targets port %v, which the manager container does not name", port.TargetPort)
	}
	for _, a := range manager.Args {
		if addr, ok := strings.CutPrefix(a, "--metrics-bind-address="); ok {
			if _, p, _ := strings.Cut(addr, ":"); p != strconv.Itoa(int(containerPort)) {
				t.Errorf("the manager serves metrics on %q, but its container port %v is %d", addr, port.TargetPort, containerPort)
			}
		}
	}

	var smSel labelSelector
	convert(t, sm.Spec.Selector, &smSel)
	if !smSel.matches(svc.Metadata.Labels) {
		t.Errorf("the ServiceMonitor selector %+v does not select the Service's labels %v", smSel, svc.Metadata.Labels)
	}
	switch {
	case len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != port.Name:
		t.Errorf("the ServiceMonitor must scrape the Service's %q port: %+v", port.Name, sm.Spec.Endpoints)
	case !sm.Spec.Endpoints[0].HonorLabels:
		t.Error("the ServiceMonitor must honor labels: the operator's series carry the pipeline's namespace")
	case sm.Spec.Endpoints[0].Scheme != "https" || sm.Spec.Endpoints[0].BearerTokenFile == "":
		// cmd/manager's --metrics-secure is on by default (config/default
		// leaves it so): plain HTTP gets no answer, no token a 401.
		t.Errorf("the ServiceMonitor must scrape over HTTPS with a bearer token: %+v", sm.Spec.Endpoints[0])
	}
}
