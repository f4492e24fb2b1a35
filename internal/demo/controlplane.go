package demo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-dev/sluice/internal/testenv"
)

// The demo's control plane is envtest's: the etcd and kube-apiserver that
// hack/build-envtest.sh builds from the Go module proxy (the tests use the same
// binaries), with the CRDs of config/crd installed. No kube-controller-manager,
// scheduler or kubelet: the pod runner plays their part for the workers.

// envtestBinaries are what the control plane needs, in the order the build
// script builds them.
var envtestBinaries = []string{"etcd", "kube-apiserver"}

// envtestDir is where the binaries are: $KUBEBUILDER_ASSETS, else the cache
// (~/.cache/sluice/k8s/<version>) that `make envtest` fills.
func envtestDir() string {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d
	}
	return filepath.Join(testenv.CacheDir(), "k8s", testenv.K8sVersion)
}

func missingBinaries(dir string) []string {
	var missing []string
	for _, b := range envtestBinaries {
		if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.Mode()&0o111 == 0 {
			missing = append(missing, b)
		}
	}
	return missing
}

// ensureEnvtest builds the binaries that are missing with hack/build-envtest.sh,
// printing a line per step with the time it took. A warm machine has them
// already and this returns at once. The build's output goes to buildLog.
func ensureEnvtest(ctx context.Context, root, buildLog string, say func(string, ...any)) (string, error) {
	dir := envtestDir()
	missing := missingBinaries(dir)
	if len(missing) == 0 {
		return dir, nil
	}
	unlock, err := lockBuild(dir, say)
	if err != nil {
		return "", err
	}
	defer unlock()
	if missing = missingBinaries(dir); len(missing) == 0 {
		return dir, nil // another build finished while we waited
	}
	say("First run: building %s %s from the Go module proxy into %s (once: minutes with a cold Go build cache, a minute or two with a warm one). Log: %s",
		strings.Join(missing, " and "), testenv.K8sVersion, dir, buildLog)

	logf, err := os.Create(buildLog)
	if err != nil {
		return "", err
	}
	defer func() { _ = logf.Close() }()
	cmd := exec.CommandContext(ctx, filepath.Join(root, "hack", "build-envtest.sh"), dir)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "K8S_VERSION="+testenv.K8sVersion)
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("hack/build-envtest.sh: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	// The script builds one binary after the other; a binary appearing is the
	// end of its step.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	step, stepStart, lastNote := 0, start, start
	report := func() {
		for step < len(missing) && !slices.Contains(missingBinaries(dir), missing[step]) {
			say("  step %d/%d: %s built in %s", step+1, len(missing), missing[step], time.Since(stepStart).Round(time.Second))
			step++
			stepStart, lastNote = time.Now(), time.Now()
		}
	}
	for {
		select {
		case err := <-done:
			report()
			if err != nil {
				return "", fmt.Errorf("hack/build-envtest.sh failed (%w); its output is in %s:\n%s", err, buildLog, tailOf(buildLog, 1500))
			}
			if m := missingBinaries(dir); len(m) > 0 {
				return "", fmt.Errorf("hack/build-envtest.sh finished but %v are missing from %s", m, dir)
			}
			say("  envtest binaries ready in %s", time.Since(start).Round(time.Second))
			return dir, nil
		case <-tick.C:
			report()
			if step < len(missing) && time.Since(lastNote) >= 30*time.Second {
				say("  step %d/%d: still building %s (%s so far)", step+1, len(missing), missing[step], time.Since(stepStart).Round(time.Second))
				lastNote = time.Now()
			}
		}
	}
}

// lockBuild takes an exclusive lock beside the binaries' folder, so that two
// demos started at once don't build into it together.
func lockBuild(dir string, say func(string, ...any)) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(filepath.Dir(dir), ".sluice-demo-build.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		say("Another sluice-demo is building the envtest binaries; waiting for it")
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			_ = f.Close()
			return nil, err
		}
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
	}, nil
}

func tailOf(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// controlPlane is the running etcd + kube-apiserver.
type controlPlane struct {
	env        *testenv.Env
	kubeconfig string
}

// startControlPlane starts etcd and kube-apiserver (their data and certificates
// go to $TMPDIR, which the demo points into its state dir) and writes an
// admin kubeconfig to kubeconfig.
func startControlPlane(kubeconfig string) (*controlPlane, error) {
	env, err := testenv.Start()
	if err != nil {
		return nil, err
	}
	kc, err := env.KubeConfig()
	if err == nil {
		err = os.WriteFile(kubeconfig, kc, 0o600)
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("kubeconfig: %w", err), env.Stop())
	}
	return &controlPlane{env: env, kubeconfig: kubeconfig}, nil
}

func (cp *controlPlane) Stop() error { return cp.env.Stop() }

// MissingEnvtestBinaries says where the control plane's binaries are looked
// for and which are missing there (tests check it before running the demo).
func MissingEnvtestBinaries() (dir string, missing []string) {
	dir = envtestDir()
	return dir, missingBinaries(dir)
}
