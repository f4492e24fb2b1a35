package charts

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/modroot"
)

// buildManager compiles cmd/manager once per test binary.
var buildManager = sync.OnceValues(func() (string, error) {
	root, err := modroot.Find()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "sluice-chart-manager-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "manager")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/manager")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", errors.New("go build ./cmd/manager: " + err.Error() + "\n" + string(out))
	}
	return bin, nil
})

func TestMain(m *testing.M) {
	code := m.Run()
	if bin, err := buildManager(); err == nil {
		_ = os.RemoveAll(filepath.Dir(bin))
	}
	os.Exit(code)
}

// parseFlags runs the real manager with args and an explicit kubeconfig that
// doesn't exist: past its flags, it stops at the kubeconfig (exit 1, "unable to
// get kubeconfig") before it touches any cluster; a flag it refuses exits 2.
func parseFlags(t *testing.T, args []string) (accepted bool, stderr string) {
	t.Helper()
	bin, err := buildManager()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(slices.Clone(args), "--kubeconfig="+filepath.Join(t.TempDir(), "none"))...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("manager %q: %v, want it to exit at the missing kubeconfig\n%s", args, err, out.String())
	}
	return exit.ExitCode() == 1 && strings.Contains(out.String(), "unable to get kubeconfig"), out.String()
}

// TestManagerTakesTheFlagsTheChartRenders runs cmd/manager with the args the
// chart renders, from the defaults and from every value set
// (ci/all-values.yaml): a value mapped to a flag the manager lacks, or
// rendered in a form its flag can't parse, fails here.
func TestManagerTakesTheFlagsTheChartRenders(t *testing.T) {
	for _, tc := range []struct {
		name, deployment string
		flags            []string
	}{
		{"defaults", "sluice-controller-manager", nil},
		{"every value set", "sluice-operator-controller-manager", []string{"-f", "charts/sluice/ci/all-values.yaml"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rendered{t: t, objs: mustHelmTemplate(t, tc.flags...)}
			var args []string
			for _, a := range r.manager(tc.deployment)["args"].([]any) {
				args = append(args, a.(string))
			}
			if ok, out := parseFlags(t, args); !ok {
				t.Errorf("the manager refuses the chart's args %q:\n%s", args, firstLines(out, 3))
			}
		})
	}
	// The check itself: a flag the manager doesn't have, a value it can't parse.
	for _, bad := range [][]string{{"--no-such-flag=1"}, {"--kafka-timeout=15"}} {
		if ok, _ := parseFlags(t, bad); ok {
			t.Errorf("the manager took %q: this test can't tell a refused flag", bad)
		}
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}
