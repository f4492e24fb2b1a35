package worker

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/workerconfig"
)

func TestSoftMemoryLimit(t *testing.T) {
	cases := []struct {
		name    string
		env     map[string]string
		want    int64
		wantErr bool
	}{
		{"no limit given", nil, 0, false},
		{"90% of the container's limit", map[string]string{workerconfig.MemoryLimitEnv: "268435456"}, 241591910, false},
		{"GOMEMLIMIT wins", map[string]string{workerconfig.MemoryLimitEnv: "268435456", "GOMEMLIMIT": "100MiB"}, 0, false},
		{"not a number", map[string]string{workerconfig.MemoryLimitEnv: "256Mi"}, 0, true},
		{"zero", map[string]string{workerconfig.MemoryLimitEnv: "0"}, 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SoftMemoryLimit(func(k string) string { return tc.env[k] })
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("SoftMemoryLimit = %d, %v; want %d (error: %v)", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// The real binary, given its container's limit the way the operator passes it,
// runs with 90% of it as the Go heap's soft limit, and says so in its metrics
// (go_gc_gomemlimit_bytes, from the Go collector it registers).
func TestWorkerBinaryTakesItsHeapLimitFromTheContainerLimit(t *testing.T) {
	b := newBroker(t)
	b.createTopics(1, allTopics...)
	cfg := crashConfig(t, b)
	cfg.Sink = workerconfig.Sink{Log: &workerconfig.LogSink{Format: "JSON"}}
	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"from the container limit", []string{workerconfig.MemoryLimitEnv + "=268435456", "GOMEMLIMIT="}, "2.4159191e+08"},
		{"GOMEMLIMIT wins", []string{workerconfig.MemoryLimitEnv + "=268435456", "GOMEMLIMIT=104857600"}, "1.048576e+08"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proc := newWorkerProcess(t, cfg)
			proc.env = tc.env
			cmd := proc.start()
			t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
			waitHealthy(t, cfg.Server.Port)
			got := ""
			eventually(t, 10*time.Second, "go_gc_gomemlimit_bytes in /metrics", func() bool {
				for _, line := range strings.Split(scrapeAll(fmt.Sprintf("http://127.0.0.1:%d/metrics", cfg.Server.Port)), "\n") {
					if v, ok := strings.CutPrefix(line, "go_gc_gomemlimit_bytes "); ok {
						got = v
						return true
					}
				}
				return false
			})
			if got != tc.want {
				t.Fatalf("go_gc_gomemlimit_bytes = %s, want %s", got, tc.want)
			}
		})
	}
}

// A malformed limit is a configuration error the pod reports at once.
func TestWorkerBinaryRejectsAMalformedContainerLimit(t *testing.T) {
	b := newBroker(t)
	cfg := crashConfig(t, b)
	proc := newWorkerProcess(t, cfg)
	proc.env = []string{workerconfig.MemoryLimitEnv + "=256Mi", "GOMEMLIMIT="}
	cmd := proc.start()
	err := cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("worker exited with %v, want exit status 2", err)
	}
	if log := string(proc.log()); !strings.Contains(log, workerconfig.MemoryLimitEnv) {
		t.Fatalf("the error does not name %s:\n%s", workerconfig.MemoryLimitEnv, log)
	}
}
