// Command kubectl-sluice is the kubectl plugin for Sluice: `kubectl sluice
// status|dlq|redrive|replay PIPELINE`. Install it with
// `go install github.com/sluice-dev/sluice/cmd/kubectl-sluice@latest` (or
// krew, plugins/sluice.yaml); kubectl finds it on the PATH.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/kubectlsluice"
)

func main() {
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("kubectl-sluice", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, kubectlsluice.Usage) }
	var namespace, kubeconfig, kubeContext string
	fs.StringVar(&namespace, "namespace", "", "namespace of the pipeline (default: the kubeconfig context's)")
	fs.StringVar(&namespace, "n", "", "shorthand for --namespace")
	fs.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
	fs.StringVar(&kubeContext, "context", "", "kubeconfig context")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cfg := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: kubeContext})
	if namespace == "" {
		ns, _, err := cfg.Namespace()
		if err != nil {
			fmt.Fprintln(os.Stderr, "kubectl-sluice:", err)
			return 1
		}
		namespace = ns
	}
	restConfig, err := cfg.ClientConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubectl-sluice:", err)
		return 1
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(sluicev1.AddToScheme(scheme))
	c, err := client.New(restConfig, client.Options{Scheme: scheme})
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubectl-sluice:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	app := &kubectlsluice.App{Client: c, Namespace: namespace, Out: os.Stdout}
	if err := app.Run(ctx, fs.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "kubectl-sluice:", err)
		if errors.Is(err, kubectlsluice.ErrUsage) {
			fmt.Fprint(os.Stderr, "\n", kubectlsluice.Usage)
			return 2
		}
		return 1
	}
	return 0
}
