package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/demo"
	"github.com/sluice-dev/sluice/internal/modroot"
)

// TestDemoWithChaosAccountsForEveryRecord runs `sluice-demo --chaos` for a
// short run, as `make demo ARGS=...` would, with the real control plane,
// kfake, the operator and real worker processes, and checks its summary:
// every record produced was delivered or dead-lettered, none lost, no effect
// applied twice, the DLQ holds exactly the poison pills and the records that
// exhausted their retries, the pipeline scaled up on the spike and down after
// it, and the pod runner restarted the workers chaos killed. Then it checks
// that nothing the demo started is still running.
func TestDemoWithChaosAccountsForEveryRecord(t *testing.T) {
	if dir, missing := demo.MissingEnvtestBinaries(); len(missing) > 0 {
		t.Fatalf("envtest binaries %v missing from %s: run `make envtest` (builds them from the Go module proxy)", missing, dir)
	}
	root, bin := buildDemo(t)
	state, err := os.MkdirTemp("", "sluice-demo-test-")
	if err != nil {
		t.Fatal(err)
	}
	summaryFile := filepath.Join(t.TempDir(), "summary.json")

	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin,
		"--duration=60s", "--chaos", "--chaos-interval=5s", "--plain",
		"--state-dir", state, "--summary-json", summaryFile)
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	runErr := cmd.Run()
	t.Logf("the demo ran %s", time.Since(start).Round(time.Second))
	kept := false
	fail := func(format string, args ...any) {
		t.Helper()
		kept = true
		t.Errorf(format, args...)
	}
	defer func() {
		if kept {
			t.Logf("demo output:\n%s\nstate kept in %s (logs/demo.log, logs/operator.log, pods/*/worker.log)", tail(out.String(), 12000), state)
		} else {
			_ = os.RemoveAll(state)
		}
	}()

	var exitErr *exec.ExitError
	if runErr != nil && !errors.As(runErr, &exitErr) {
		fail("the demo did not run: %v", runErr)
		return
	}
	b, err := os.ReadFile(summaryFile)
	if err != nil {
		fail("no summary: %v (exit: %v)", err, runErr)
		return
	}
	var s demo.Summary
	if err := json.Unmarshal(b, &s); err != nil {
		fail("summary: %v", err)
		return
	}
	if runErr != nil {
		fail("the demo exited with %v", runErr)
	}
	if s.Lost != 0 || s.DuplicateEffects != 0 || !s.OK {
		fail("lost %d, duplicate effects %d", s.Lost, s.DuplicateEffects)
	}
	if s.Produced == 0 || s.Produced != s.Delivered+s.DeadLettered || !s.Drained {
		fail("produced %d ≠ delivered %d + dead-lettered %d (still in retry %d, not consumed %d)",
			s.Produced, s.Delivered, s.DeadLettered, s.StillInRetry, s.NotYetConsumed)
	}
	for _, p := range s.Pipelines {
		if !p.DLQMatches || p.DeadLettered != p.PoisonSent+p.ExhaustedRetries {
			fail("%s: DLQ %d ≠ %d poison pills + %d exhausted retries: %v", p.Name, p.DeadLettered, p.PoisonSent, p.ExhaustedRetries, p.DLQMismatch)
		}
		if p.PoisonSent == 0 || p.ExhaustedRetries == 0 {
			fail("%s: the run showed %d poison pills and %d exhausted retries; want some of each", p.Name, p.PoisonSent, p.ExhaustedRetries)
		}
	}
	if len(s.ScaleUps) == 0 || len(s.ScaleDowns) == 0 {
		fail("scale-ups %v, scale-downs %v: want at least one of each", s.ScaleUps, s.ScaleDowns)
	}
	if s.ChaosKills == 0 || s.WorkerRestarts == 0 {
		fail("chaos kills %d, worker restarts %d: want the pod runner to restart killed workers", s.ChaosKills, s.WorkerRestarts)
	}
	if left := processesUsing(state); len(left) > 0 {
		fail("still running after the demo exited:\n%s", strings.Join(left, "\n"))
	}
	if kept {
		return
	}
	t.Logf("produced %d = delivered %d + dead-lettered %d; %d redeliveries; scale-ups %d, scale-downs %d; %d chaos kills, %d restarts",
		s.Produced, s.Delivered, s.DeadLettered, s.Pipelines[0].Redeliveries, len(s.ScaleUps), len(s.ScaleDowns), s.ChaosKills, s.WorkerRestarts)
}

// TestDemoStopsEverythingOnSIGTERM sends SIGTERM to a running demo once
// records flow: it stops everything it started, prints a summary of the
// interrupted run (nothing lost) and exits with 130.
func TestDemoStopsEverythingOnSIGTERM(t *testing.T) {
	if dir, missing := demo.MissingEnvtestBinaries(); len(missing) > 0 {
		t.Fatalf("envtest binaries %v missing from %s: run `make envtest` (builds them from the Go module proxy)", missing, dir)
	}
	root, bin := buildDemo(t)
	state := filepath.Join(t.TempDir(), "state")
	summaryFile := filepath.Join(t.TempDir(), "summary.json")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--duration=5m", "--plain", "--state-dir", state, "--summary-json", summaryFile)
	cmd.Dir = root
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The plain view prints a status line every 5 s; the first one with a
	// delivered record is the moment to interrupt.
	for !delivering(out.String()) {
		if ctx.Err() != nil {
			t.Fatalf("no record delivered:\n%s", out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 130 {
		t.Errorf("exit after SIGTERM: %v, want exit status 130", err)
	}
	if left := processesUsing(state); len(left) > 0 {
		t.Errorf("still running after the demo exited:\n%s", strings.Join(left, "\n"))
	}
	var s demo.Summary
	if b, err := os.ReadFile(summaryFile); err != nil {
		t.Errorf("no summary: %v", err)
	} else if err := json.Unmarshal(b, &s); err != nil || !s.Interrupted || s.Lost != 0 || s.Delivered == 0 {
		t.Errorf("summary of the interrupted run: %+v (%v)", s, err)
	}
	if t.Failed() {
		t.Logf("demo output:\n%s", tail(out.String(), 8000))
	}
}

var statusDelivered = regexp.MustCompile(`delivered ([1-9][0-9]*) \(`)

func delivering(out string) bool { return statusDelivered.MatchString(out) }

// buildDemo builds cmd/sluice-demo once for the package's tests.
func buildDemo(t *testing.T) (root, bin string) {
	t.Helper()
	b, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	return b.root, b.bin
}

type built struct{ root, bin string }

var buildOnce = sync.OnceValues(func() (built, error) {
	root, err := modroot.Find()
	if err != nil {
		return built{}, err
	}
	dir, err := os.MkdirTemp("", "sluice-demo-bin-")
	if err != nil {
		return built{}, err
	}
	binDir = dir
	bin := filepath.Join(dir, "sluice-demo")
	build := exec.Command("go", "build", "-o", bin, "./cmd/sluice-demo")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return built{}, fmt.Errorf("go build ./cmd/sluice-demo: %w\n%s", err, out)
	}
	return built{root, bin}, nil
})

// binDir holds the binary buildOnce built; TestMain removes it.
var binDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// lockedBuffer is a bytes.Buffer safe for a process's output and a reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// processesUsing lists the processes whose command line names dir: the
// workers (their binary is in it), etcd and kube-apiserver (their data and
// certificates are).
func processesUsing(dir string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte(dir)) {
			continue
		}
		out = append(out, fmt.Sprintf("pid %s: %s", e.Name(), strings.ReplaceAll(string(cmdline), "\x00", " ")))
	}
	return out
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
