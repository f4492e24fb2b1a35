// Command worker is Sluice's Kafka consumer. In a StreamPipeline's pods it reads
// the config the operator rendered; standalone it runs against any Kafka:
//
//	worker --config worker.yaml
package main

import (
	"context"
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
	if err := w.Run(ctx); err != nil {
		log.Error("worker stopped", "err", err)
		return 1
	}
	return 0
}
