package charts

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sluice-dev/sluice/internal/modroot"
	"github.com/sluice-dev/sluice/internal/testenv"
)

// The versions `make helm-lint chart-check test` build (HELM_VERSION,
// KUSTOMIZE_VERSION); TestToolVersionsMatchMakefile keeps them equal.
const (
	helmVersion      = "v3.22.0"
	kustomizeVersion = "v5.8.2"
)

// The release the drift tests render: named like the chart, in kustomize's
// namespace, so that the chart's names are config/default's.
const (
	release   = "sluice"
	namespace = "sluice-system"
)

// tool returns $env (make sets it), else the build `make` caches in
// $SLUICE_CACHE/tools. A missing tool fails the test with how to get it.
func tool(t *testing.T, env, name, version, module string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		p = filepath.Join(testenv.CacheDir(), "tools", name+"-"+version)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s not found (%v): run `make chart-check` (builds %s@%s from the Go module proxy into %s) or set %s",
			name, err, module, version, filepath.Join(testenv.CacheDir(), "tools"), env)
	}
	return p
}

func helm(t *testing.T) string {
	return tool(t, "HELM", "helm", helmVersion, "helm.sh/helm/v3/cmd/helm")
}

func kustomize(t *testing.T) string {
	return tool(t, "KUSTOMIZE", "kustomize", kustomizeVersion, "sigs.k8s.io/kustomize/kustomize/v5")
}

func root(t *testing.T) string {
	t.Helper()
	dir, err := modroot.Find()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// run runs a tool and returns its stdout; stderr goes into the error.
func run(t *testing.T, dir, bin string, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w\n%s", filepath.Base(bin), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// helmTemplate renders the chart (CRDs included) as release/namespace, with
// more of helm's flags (--set k=v, -f values.yaml; paths from the module root).
func helmTemplate(t *testing.T, flags ...string) ([]*unstructured.Unstructured, error) {
	t.Helper()
	args := append([]string{"template", release, "charts/sluice", "--namespace", namespace, "--include-crds"}, flags...)
	out, err := run(t, root(t), helm(t), args...)
	if err != nil {
		return nil, err
	}
	return Decode(out)
}

func mustHelmTemplate(t *testing.T, flags ...string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := helmTemplate(t, flags...)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// kustomizeBuild builds the kustomization in dir.
func kustomizeBuild(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	out, err := run(t, dir, kustomize(t), "build", ".")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Decode(out)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func TestToolVersionsMatchMakefile(t *testing.T) {
	mk, err := os.ReadFile(filepath.Join(root(t), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	for variable, want := range map[string]string{"HELM_VERSION": helmVersion, "KUSTOMIZE_VERSION": kustomizeVersion} {
		m := regexp.MustCompile(`(?m)^` + variable + ` \?= (\S+)$`).FindSubmatch(mk)
		if m == nil {
			t.Errorf("the Makefile sets no %s", variable)
			continue
		}
		if string(m[1]) != want {
			t.Errorf("the Makefile's %s is %s, the tests look for %s", variable, m[1], want)
		}
	}
}
