// Command worker is Sluice's Kafka consumer. In a StreamPipeline's pods it reads
// the config the operator rendered; standalone it runs against any Kafka:
//
//	worker --config worker.yaml
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sluice-dev/sluice/internal/workerconfig"
	"github.com/sluice-dev/sluice/worker"
)

func main() { os.Exit(run()) }

func run() int {
	configPath := flag.String("config", "/etc/sluice/config/"+workerconfig.FileName, "Path of the worker config (YAML).")
	flag.Parse()

	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	cfg, err := workerconfig.Load(*configPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "invalid config:", err)
		return 2
	}
	// Under a backlog the heap grows with what is fetched ahead: a soft limit
	// below the container's makes the GC work harder instead of the pod being
	// OOM-killed.
	softLimit, err := worker.SoftMemoryLimit(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if softLimit > 0 {
		debug.SetMemoryLimit(softLimit)
		log.Info("Go heap soft limit set from the container's memory limit", "bytes", softLimit)
	}
	// The process's own metrics (go_*, process_*: heap, GC, the soft limit,
	// resident memory) next to the worker's.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	w, err := worker.New(worker.Options{
		Config: cfg, Logger: log, Registry: reg,
		ScaleUpPath: filepath.Join(filepath.Dir(*configPath), workerconfig.ScaleUpFileName),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	// SIGTERM (Kubernetes) and SIGINT start the graceful shutdown: stop fetching,
	// finish in-flight records, commit, leave the group.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if plan := os.Getenv(worker.ReprocessPlanEnv); plan != "" {
		return reprocess(ctx, w, log, plan)
	}
	if err := w.Run(ctx); err != nil {
		log.Error("worker stopped", "err", err)
		return 1
	}
	return 0
}

// reprocess runs a StreamReplay's Reprocess Job: the plan, then its result
// as the container's termination message (JSON), which the operator reads.
func reprocess(ctx context.Context, w *worker.Worker, log *slog.Logger, planJSON string) int {
	var plan worker.ReprocessPlan
	if err := json.Unmarshal([]byte(planJSON), &plan); err != nil {
		fmt.Fprintf(os.Stderr, "invalid %s: %v\n", worker.ReprocessPlanEnv, err)
		return 2
	}
	res, err := w.Reprocess(ctx, plan)
	if errors.Is(err, worker.ErrReprocessUnsupported) {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err != nil {
		log.Error("reprocess stopped; a new run resumes from the committed position", "err", err, "done", res.Done, "failed", res.Failed)
		return 1
	}
	out, _ := json.Marshal(res)
	log.Info("reprocess complete", "done", res.Done, "failed", res.Failed)
	path := os.Getenv(worker.TerminationLogEnv)
	if path == "" {
		path = "/dev/termination-log"
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		log.Warn("could not write the result to the termination log", "path", path, "err", err)
	}
	return 0
}
