package worker

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/internal/workerconfig"
	"github.com/sluice-dev/sluice/worker/sink"
)

// startWithHint runs a worker with up to 100 hours of startup jitter and the given
// scale-up hint file content, and returns it.
func startWithHint(t *testing.T, hint *workerconfig.ScaleUp) *Worker {
	t.Helper()
	b := newBroker(t)
	b.createTopics(1, allTopics...)
	cfg := b.config()
	cfg.Startup.MaxJitter = metav1.Duration{Duration: 100 * time.Hour} // a draw under 2 s: 1 in 180,000
	path := filepath.Join(t.TempDir(), workerconfig.ScaleUpFileName)
	if hint != nil {
		data, err := hint.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w, err := New(Options{
		Config: cfg, Sink: sink.NewLog(io.Discard, "JSON"), Listener: ln, ScaleUpPath: path,
		Logger:    slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
		KafkaOpts: []kgo.Opt{kgo.MetadataMinAge(100 * time.Millisecond)},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker stopped with %v", err)
		}
	})
	return w
}

// TestWorkerAddedByAScaleUpJoinsWithoutJitter: a pod that a scale-up started
// (the operator's hint is fresh) joins at once, not after up to an hour.
func TestWorkerAddedByAScaleUpJoinsWithoutJitter(t *testing.T) {
	now := metav1.Now()
	w := startWithHint(t, &workerconfig.ScaleUp{At: &now, From: 1, To: 3})
	eventually(t, 15*time.Second, "the worker joined the group", w.joined.Load)
}

// TestWorkerStartedOtherwiseWaitsItsJitter: with no hint, or a stale one (a
// pod restarting long after the last scale-up), the jitter applies.
func TestWorkerStartedOtherwiseWaitsItsJitter(t *testing.T) {
	old := metav1.NewTime(time.Now().Add(-time.Hour))
	for name, hint := range map[string]*workerconfig.ScaleUp{"no hint": nil, "stale hint": {At: &old, From: 1, To: 3}} {
		t.Run(name, func(t *testing.T) {
			w := startWithHint(t, hint)
			time.Sleep(2 * time.Second)
			if w.joined.Load() {
				t.Fatal("joined without waiting its startup jitter")
			}
		})
	}
}
