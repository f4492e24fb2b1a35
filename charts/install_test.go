package charts

import (
	"os"
	"path/filepath"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-dev/sluice/internal/testenv"
)

// TestChartInstallsUpgradesAndUninstallsOnARealAPIServer runs helm install,
// upgrade and uninstall against a real kube-apiserver (envtest, with the CRDs
// of config/crd/bases): the API server validates every object the chart
// renders, with the defaults and with every value set but the Prometheus
// Operator's and the dashboards' (envtest has neither their CRDs nor a Grafana).
// No controllers run, so the Deployment's pods never exist.
func TestChartInstallsUpgradesAndUninstallsOnARealAPIServer(t *testing.T) {
	env, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	kc, err := env.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	helmRun := func(args ...string) {
		t.Helper()
		args = append(args, "--kubeconfig", kubeconfig, "--namespace", namespace)
		if _, err := run(t, root(t), helm(t), args...); err != nil {
			t.Fatal(err)
		}
	}
	// Each rendered object, but the CRDs envtest installed, must be on the server.
	present := func(objs []*unstructured.Unstructured) {
		t.Helper()
		for _, o := range objs {
			if o.GetKind() == "CustomResourceDefinition" {
				continue
			}
			if err := getLike(t, env.Client, o); err != nil {
				t.Errorf("%s after helm: %v", KeyOf(o), err)
			}
		}
	}

	helmRun("install", release, "charts/sluice", "--create-namespace")
	present(mustHelmTemplate(t))

	everyValue := []string{"-f", "charts/sluice/ci/all-values.yaml", "--set", "prometheus.serviceMonitor.enabled=false",
		"--set", "prometheus.podMonitor.enabled=false", "--set", "prometheus.prometheusRule.enabled=false"}
	helmRun(append([]string{"upgrade", release, "charts/sluice"}, everyValue...)...)
	upgraded := mustHelmTemplate(t, everyValue...)
	present(upgraded)
	d := find(upgraded, Key{Kind: "Deployment", Namespace: namespace, Name: "sluice-operator-controller-manager"})
	if d == nil {
		t.Fatal("every value set renders no Deployment sluice-operator-controller-manager")
	}
	if err := getLike(t, env.Client, d); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := unstructured.NestedMap(d.Object, "spec", "template", "spec", "affinity"); !ok {
		t.Error("the upgraded Deployment has no affinity on the server")
	}

	helmRun("uninstall", release, "--wait")
	err = getLike(t, env.Client, d)
	if !apierrors.IsNotFound(err) {
		t.Errorf("%s after helm uninstall: %v, want NotFound", KeyOf(d), err)
	}
}

// getLike reads the object o names from the server into o (so its fields are
// the server's).
func getLike(t *testing.T, c client.Client, o *unstructured.Unstructured) error {
	t.Helper()
	got := &unstructured.Unstructured{}
	got.SetGroupVersionKind(schema.FromAPIVersionAndKind(o.GetAPIVersion(), o.GetKind()))
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: o.GetNamespace(), Name: o.GetName()}, got); err != nil {
		return err
	}
	o.Object = got.Object
	return nil
}
