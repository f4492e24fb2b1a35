package demo

import (
	"errors"
	"flag"
	"fmt"
	"time"
)

// Sinks the demo can deliver to.
const (
	sinkHTTP     = "http"
	sinkLog      = "log"
	sinkPostgres = "postgres"
)

// Config is the demo's command line.
type Config struct {
	// Duration is how long records are produced; the drain and the summary
	// follow.
	Duration time.Duration
	// Rate is the steady rate per pipeline (records/s); Spike multiplies it in
	// the middle of the run.
	Rate  float64
	Spike float64
	// Partitions of each source topic.
	Partitions int
	// Pipelines is how many StreamPipelines (each with its own topic) run.
	Pipelines int
	// Sink is http (the demo's receiver), log or postgres (PGDSN).
	Sink  string
	PGDSN string
	// Chaos SIGKILLs a random worker every ChaosInterval.
	Chaos         bool
	ChaosInterval time.Duration
	// Keep leaves everything running after the summary, until Ctrl-C.
	Keep bool
	// StateDir holds everything the demo writes ("" = bin/demo in the clone).
	StateDir string
	// SummaryJSON, when set, is where the summary is written as JSON.
	SummaryJSON string
	// DrainTimeout bounds the wait, after the load stops, for every record to
	// be delivered or dead-lettered.
	DrainTimeout time.Duration
	// Plain prints a status line every few seconds instead of the live view,
	// even on a terminal.
	Plain bool
	// MetricsBindAddress is where the operator serves its metrics, as
	// cmd/manager's --metrics-bind-address ("0", the default: nowhere, so that
	// the demo binds no fixed port).
	MetricsBindAddress string
	// ScrapeTargets, when set, is a folder where the demo keeps Prometheus
	// file_sd files for the operator and every worker pod (scrapetargets.go).
	ScrapeTargets string
}

// BindFlags registers the demo's flags on fs.
func (c *Config) BindFlags(fs *flag.FlagSet) {
	fs.DurationVar(&c.Duration, "duration", 2*time.Minute, "How long the load generator produces; a drain and the summary follow.")
	fs.Float64Var(&c.Rate, "rate", 50, "Steady rate per pipeline, records/s.")
	fs.Float64Var(&c.Spike, "spike", 10, "Rate multiplier of the spike in the middle of the run.")
	fs.IntVar(&c.Partitions, "partitions", 6, "Partitions of each source topic (also the most workers a pipeline scales to).")
	fs.IntVar(&c.Pipelines, "pipelines", 1, "Number of StreamPipelines, each with its own topic.")
	fs.StringVar(&c.Sink, "sink", sinkHTTP, "Where records go: http (a local receiver that fails now and then), log (the workers' stdout) or postgres (--pg-dsn).")
	fs.StringVar(&c.PGDSN, "pg-dsn", "", "PostgreSQL connection string for --sink postgres; the demo creates its own table.")
	fs.BoolVar(&c.Chaos, "chaos", false, "SIGKILL a random worker every --chaos-interval (only members settled in their consumer group; see docs/demo.md).")
	fs.DurationVar(&c.ChaosInterval, "chaos-interval", 6*time.Second, "Time between chaos kills.")
	fs.BoolVar(&c.Keep, "keep", false, "Leave everything running after the summary, with a kubeconfig for kubectl; Ctrl-C stops it all.")
	fs.StringVar(&c.StateDir, "state-dir", "", "Folder for everything the demo writes: logs, pod folders, kubeconfig, control plane data (default bin/demo in the clone; emptied at start).")
	fs.StringVar(&c.SummaryJSON, "summary-json", "", "Also write the summary as JSON to this file.")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", 90*time.Second, "After the load stops, how long to wait for every record to be delivered or dead-lettered.")
	fs.BoolVar(&c.Plain, "plain", false, "Print a status line every few seconds instead of the live view.")
	fs.StringVar(&c.MetricsBindAddress, "metrics-bind-address", "0", "Where the operator serves its Prometheus metrics, e.g. 127.0.0.1:8080 (\"0\": off).")
	fs.StringVar(&c.ScrapeTargets, "scrape-targets", "", "Keep Prometheus file_sd files for the operator ("+OperatorTargetsFile+") and every worker pod ("+WorkerTargetsFile+") in this folder (docs/observability.md).")
}

// Validate checks the flags' values.
func (c *Config) Validate() error {
	var errs []error
	if c.Duration < 20*time.Second {
		errs = append(errs, errors.New("--duration must be at least 20s: the spike, the scale-up and the scale-down need the time"))
	}
	if c.Rate <= 0 || c.Spike < 1 {
		errs = append(errs, errors.New("--rate must be positive and --spike at least 1"))
	}
	if c.Partitions < 1 || c.Partitions > 64 {
		errs = append(errs, errors.New("--partitions must be between 1 and 64"))
	}
	if c.Pipelines < 1 || c.Pipelines > 8 {
		errs = append(errs, errors.New("--pipelines must be between 1 and 8"))
	}
	switch c.Sink {
	case sinkHTTP, sinkLog:
	case sinkPostgres:
		if c.PGDSN == "" {
			errs = append(errs, errors.New("--sink postgres needs --pg-dsn"))
		}
	default:
		errs = append(errs, fmt.Errorf("--sink %q: want http, log or postgres", c.Sink))
	}
	if c.Chaos && c.ChaosInterval < time.Second {
		errs = append(errs, errors.New("--chaos-interval must be at least 1s"))
	}
	return errors.Join(errs...)
}
