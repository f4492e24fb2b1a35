package charts

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Objects of config/default that the chart leaves out on purpose.
var notInChart = map[Key]string{
	// Helm installs into a namespace that exists (helm install
	// --create-namespace); a chart that also created it would conflict. The
	// chart's README says to label it pod-security.kubernetes.io/enforce=restricted.
	{Kind: "Namespace", Name: namespace}: "the release namespace",
}

func withoutNotInChart(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if _, skip := notInChart[KeyOf(o)]; !skip {
			out = append(out, o)
		}
	}
	return out
}

// mustHave fails unless objs holds every key: a comparison that lost its
// objects (a decode or filter gone wrong) must not pass for an empty one.
func mustHave(t *testing.T, objs []*unstructured.Unstructured, keys ...Key) {
	t.Helper()
	have := map[Key]bool{}
	for _, o := range objs {
		have[KeyOf(o)] = true
	}
	for _, k := range keys {
		if !have[k] {
			t.Errorf("%s is not among the objects compared", k)
		}
	}
}

func reportDiffs(t *testing.T, diffs []string, how string) {
	t.Helper()
	for _, d := range diffs {
		t.Error(d)
	}
	if len(diffs) > 0 {
		t.Logf("the chart (charts/sluice) and config/ differ; %s, or change config/ and run `make manifests` "+
			"(hack/sync-chart.sh copies the CRDs, role rules and alerts into the chart)", how)
	}
}

func TestChartInstallsWhatConfigDefaultDoes(t *testing.T) {
	chart := mustHelmTemplate(t)
	kust := withoutNotInChart(kustomizeBuild(t, filepath.Join(root(t), "config", "default")))
	mustHave(t, kust,
		Key{Kind: "CustomResourceDefinition", Name: "streampipelines.streaming.sluice.dev"},
		Key{Kind: "ClusterRole", Name: "sluice-manager-role"},
		Key{Kind: "Role", Namespace: namespace, Name: "sluice-leader-election-role"},
		Key{Kind: "Deployment", Namespace: namespace, Name: "sluice-controller-manager"},
	)
	reportDiffs(t, Diff(chart, kust), "follow config/default in charts/sluice/templates with the default values")
}

// TestChartWithWatchNamespacesInstallsWhatConfigNamespacedDoes compares the
// namespace-scoped mode: the chart with watchNamespaces set to the namespaces
// config/namespaced's manager watches, against that overlay.
func TestChartWithWatchNamespacesInstallsWhatConfigNamespacedDoes(t *testing.T) {
	kust := withoutNotInChart(kustomizeBuild(t, filepath.Join(root(t), "config", "namespaced")))
	watched := watchedNamespaces(t, kust)
	if len(watched) < 2 {
		t.Fatalf("config/namespaced watches %q: the comparison wants a list of at least two", watched)
	}
	keys := []Key{{Kind: "ClusterRole", Name: "sluice-metrics-auth-role"}}
	for _, ns := range watched {
		keys = append(keys, Key{Kind: "Role", Namespace: ns, Name: "sluice-manager-role"},
			Key{Kind: "RoleBinding", Namespace: ns, Name: "sluice-manager-rolebinding"})
	}
	mustHave(t, kust, keys...)
	for _, k := range []Key{{Kind: "ClusterRole", Name: "sluice-manager-role"}, {Kind: "ClusterRoleBinding", Name: "sluice-manager-rolebinding"}} {
		if find(kust, k) != nil {
			t.Errorf("config/namespaced builds %s: its manager must have no cluster-wide namespaced access", k)
		}
	}
	chart := mustHelmTemplate(t, "--set", "watchNamespaces={"+strings.Join(watched, ",")+"}")
	reportDiffs(t, Diff(chart, kust), "follow config/namespaced in charts/sluice/templates with watchNamespaces set")
}

// watchedNamespaces returns the manager's --watch-namespaces in objs.
func watchedNamespaces(t *testing.T, objs []*unstructured.Unstructured) []string {
	t.Helper()
	d := find(objs, Key{Kind: "Deployment", Namespace: namespace, Name: "sluice-controller-manager"})
	if d == nil {
		t.Fatal("no Deployment sluice-controller-manager")
	}
	cs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	for _, c := range cs {
		args, _, _ := unstructured.NestedStringSlice(c.(map[string]any), "args")
		for _, a := range args {
			if v, ok := strings.CutPrefix(a, "--watch-namespaces="); ok {
				return strings.Split(v, ",")
			}
		}
	}
	t.Fatalf("%s has no --watch-namespaces", KeyOf(d))
	return nil
}

// config/default leaves config/prometheus commented out, for clusters without
// the Prometheus Operator; its comment says to uncomment it. The chart's
// prometheus.* values are that line.
const prometheusLine = "# - ../prometheus\n"

func TestChartWithPrometheusObjectsInstallsWhatConfigPrometheusAdds(t *testing.T) {
	config := filepath.Join(t.TempDir(), "config")
	if err := os.CopyFS(config, os.DirFS(filepath.Join(root(t), "config"))); err != nil {
		t.Fatal(err)
	}
	kf := filepath.Join(config, "default", "kustomization.yaml")
	k, err := os.ReadFile(kf)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(k, []byte(prometheusLine)) != 1 {
		t.Fatalf("config/default/kustomization.yaml has no line %q to uncomment: follow it here", prometheusLine)
	}
	k = bytes.Replace(k, []byte(prometheusLine), []byte(strings.TrimPrefix(prometheusLine, "# ")), 1)
	if err := os.WriteFile(kf, k, 0o644); err != nil {
		t.Fatal(err)
	}

	chart := mustHelmTemplate(t, "--set", "prometheus.serviceMonitor.enabled=true",
		"--set", "prometheus.podMonitor.enabled=true", "--set", "prometheus.prometheusRule.enabled=true")
	kust := withoutNotInChart(kustomizeBuild(t, filepath.Join(config, "default")))
	mustHave(t, kust,
		Key{Kind: "Service", Namespace: namespace, Name: "sluice-controller-manager-metrics"},
		Key{Kind: "ServiceMonitor", Namespace: namespace, Name: "sluice-controller-manager"},
		Key{Kind: "PodMonitor", Namespace: namespace, Name: "sluice-workers"},
		Key{Kind: "PrometheusRule", Namespace: namespace, Name: "sluice-alerts"},
	)
	reportDiffs(t, Diff(chart, kust), "follow config/prometheus in charts/sluice/templates with prometheus.*.enabled=true")
}

func TestChartCRDsAreConfigsByteForByte(t *testing.T) {
	r := root(t)
	config := yamlFiles(t, filepath.Join(r, "config", "crd", "bases"))
	chart := yamlFiles(t, filepath.Join(r, "charts", "sluice", "crds"))
	if len(config) == 0 {
		t.Fatal("config/crd/bases holds no CRD")
	}
	for name, b := range config {
		c, ok := chart[name]
		switch {
		case !ok:
			t.Errorf("charts/sluice/crds has no %s: run `make manifests`", name)
		case !bytes.Equal(c, b):
			t.Errorf("charts/sluice/crds/%s differs from config/crd/bases/%s: run `make manifests`", name, name)
		}
	}
	for name := range chart {
		if _, ok := config[name]; !ok {
			t.Errorf("charts/sluice/crds/%s is not in config/crd/bases: run `make manifests`", name)
		}
	}
}

func yamlFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(p)] = b
	}
	return out
}

// TestChartEmbedsTheDashboards checks the dashboards ConfigMap, which
// kustomize has no counterpart of, against config/grafana: each dashboard byte
// for byte, labelled for Grafana's sidecar. (With the default values the
// drift tests see that it is off.) Without a dashboard in config/grafana,
// turning them on must fail and say so.
func TestChartEmbedsTheDashboards(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(root(t), "config", "grafana", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		_, err := helmTemplate(t, "--set", "dashboards.enabled=true")
		if err == nil || !strings.Contains(err.Error(), "holds no dashboard") {
			t.Fatalf("config/grafana has no dashboard, yet dashboards.enabled=true rendered (err %v)", err)
		}
		return
	}
	objs := mustHelmTemplate(t, "--set", "dashboards.enabled=true", "--set", "dashboards.namespace=monitoring")
	cm := find(objs, Key{Kind: "ConfigMap", Namespace: "monitoring", Name: "sluice-dashboards"})
	if cm == nil {
		t.Fatalf("dashboards.enabled=true rendered no ConfigMap monitoring/sluice-dashboards")
	}
	if v := cm.GetLabels()["grafana_dashboard"]; v != "1" {
		t.Errorf("the dashboards ConfigMap has grafana_dashboard=%q, want \"1\" (the sidecar's default)", v)
	}
	data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
	var want []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(p)
		want = append(want, name)
		if got, ok := data[name]; !ok {
			t.Errorf("the dashboards ConfigMap has no %s: run `make manifests`", name)
		} else if got != string(b) {
			t.Errorf("the dashboards ConfigMap's %s differs from config/grafana/%s: run `make manifests`", name, name)
		}
	}
	got := make([]string, 0, len(data))
	for k := range data {
		got = append(got, k)
	}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("the dashboards ConfigMap holds %v, config/grafana %v: run `make manifests`", got, want)
	}
}

func find(objs []*unstructured.Unstructured, k Key) *unstructured.Unstructured {
	for _, o := range objs {
		if KeyOf(o) == k {
			return o
		}
	}
	return nil
}
