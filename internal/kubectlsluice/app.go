// Package kubectlsluice is the kubectl plugin `kubectl sluice`: it shows a
// pipeline's health and dead letters, and creates StreamReplays and follows
// them. It reads Kafka with the pipeline's connection settings and Secrets,
// using the caller's Kubernetes credentials.
package kubectlsluice

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/controllers"
)

// App runs one command.
type App struct {
	// Client reaches the Kubernetes API; Namespace is the namespace of the
	// pipelines named on the command line.
	Client    client.Client
	Namespace string
	Out       io.Writer
	// KafkaOpts are extra options for the plugin's Kafka clients.
	KafkaOpts []kgo.Opt
	// Poll is how often a followed replay is read (default 1 s).
	Poll time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Usage is the plugin's help (README.md shows it).
const Usage = `kubectl sluice: Sluice pipelines from the command line.

Usage:
  kubectl sluice status PIPELINE                 conditions, lag per partition, DLQ depth, recent events
  kubectl sluice dlq PIPELINE [--limit N] [--class poison|transient]
                                                 peek dead letters with their failure headers decoded
  kubectl sluice redrive PIPELINE [--class C] [--message-contains S] [--since 1h]
                                  [--target RetryTopic|Source] [--reprocess] [--rate N] [--limit N] [--dry-run] [--no-wait]
                                                 send dead letters back through the pipeline (a StreamReplay);
                                                 --reprocess writes them to its sink from a Job instead
  kubectl sluice replay PIPELINE --from-time T [--to-time T] [--target RetryTopic] [--reprocess] [--rate N] [--dry-run] [--no-wait]
                                                 send a time window of the source topic through the pipeline again
  kubectl sluice rewind PIPELINE (--to-time T | --ago 2h | --offset P=O ...) [--dry-run] [--no-wait]
                                                 move the pipeline's consumer group back (workers stop meanwhile)

Global flags (before the command): -n/--namespace, --kubeconfig, --context.
Times are RFC 3339 ("2026-11-24T00:00:00Z"); --since takes a duration back from now ("90m").
The write commands create a StreamReplay and follow it until it is Complete
(--no-wait returns at once): kubectl get sr shows them. docs/replay.md
`

// ErrUsage is a command line that can't be run; the message says why.
var ErrUsage = errors.New("usage")

// Run runs the command in args (without the global flags).
func (a *App) Run(ctx context.Context, args []string) error {
	if a.Poll == 0 {
		a.Poll = time.Second
	}
	if a.Now == nil {
		a.Now = time.Now
	}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		_, err := io.WriteString(a.Out, Usage)
		return err
	}
	switch args[0] {
	case "status":
		return a.status(ctx, args[1:])
	case "dlq":
		return a.dlq(ctx, args[1:])
	case "redrive":
		return a.redrive(ctx, args[1:])
	case "replay":
		return a.replay(ctx, args[1:])
	case "rewind":
		return a.rewind(ctx, args[1:])
	}
	return fmt.Errorf("%w: unknown command %q (status, dlq, redrive, replay, rewind)", ErrUsage, args[0])
}

// parse parses a command's flags and its one positional argument (the
// pipeline), which may come before or after the flags.
func parse(fs *flag.FlagSet, args []string) (string, error) {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrUsage, fs.Name(), err)
	}
	if fs.NArg() == 0 {
		return "", fmt.Errorf("%w: %s needs a pipeline name", ErrUsage, fs.Name())
	}
	name := fs.Arg(0)
	if err := fs.Parse(fs.Args()[1:]); err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrUsage, fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return "", fmt.Errorf("%w: %s takes one pipeline, got also %s", ErrUsage, fs.Name(), strings.Join(fs.Args(), " "))
	}
	return name, nil
}

// pipeline reads the pipeline and its Kafka connection.
func (a *App) pipeline(ctx context.Context, name string) (*sluicev1.StreamPipeline, []kgo.Opt, error) {
	sp := &sluicev1.StreamPipeline{}
	if err := a.Client.Get(ctx, types.NamespacedName{Namespace: a.Namespace, Name: name}, sp); err != nil {
		return nil, nil, fmt.Errorf("StreamPipeline %s/%s: %w", a.Namespace, name, err)
	}
	secrets, err := controllers.PipelineSecrets(ctx, a.Client, sp)
	if err != nil {
		return nil, nil, fmt.Errorf("the Secrets of StreamPipeline %s/%s: %w", a.Namespace, name, err)
	}
	opts, err := controllers.KafkaConnOf(sp, secrets).Opts()
	if err != nil {
		return nil, nil, fmt.Errorf("the Kafka connection of StreamPipeline %s/%s: %w", a.Namespace, name, err)
	}
	return sp, append(opts, a.KafkaOpts...), nil
}

func (a *App) printf(format string, args ...any) {
	_, _ = fmt.Fprintf(a.Out, format, args...)
}
