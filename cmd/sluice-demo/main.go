// Command sluice-demo runs Sluice end to end on this machine, with no cluster,
// no Kafka and no root: an embedded kube-apiserver and etcd (envtest), kfake,
// the operator in-process, real worker processes, a load generator, a live
// view and a summary that accounts for every record. `make demo` runs it;
// docs/demo.md explains what it shows.
//
//	go run ./cmd/sluice-demo [--duration 2m] [--chaos] [--keep] ...
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sluice-dev/sluice/internal/demo"
)

func main() { os.Exit(run()) }

func run() int {
	var cfg demo.Config
	cfg.BindFlags(flag.CommandLine)
	flag.Parse()

	// Ctrl-C, SIGTERM and a closed terminal (SIGHUP) stop everything in order;
	// a second Ctrl-C kills the demo at once (its workers die with it).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		<-ctx.Done()
		stop()
	}()
	sum, err := demo.Run(ctx, cfg, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sluice-demo:", err)
		return 2
	}
	return sum.ExitCode()
}
