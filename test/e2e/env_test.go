//go:build e2e

// Package e2e runs Sluice end to end on a real cluster: the operator deployed
// in-cluster with `make deploy`, worker pods run by a real kubelet, and a
// Kafka-protocol broker (kfake), an HTTP receiver and PostgreSQL on the host,
// on the address pods reach the host on. docs/e2e.md says what each scenario
// proves and how to run it (`make e2e`, or `make test-e2e` on a cluster that is
// up with the operator deployed).
//
// The suite needs only a kubeconfig and that address, so it runs unchanged on
// the local cluster (hack/cluster.sh) and on kind.
package e2e

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/sluice-dev/sluice/internal/modroot"
)

// Settings, from the environment.
const (
	// envHost is the address pods reach the host on; everything the suite
	// starts listens there (and on loopback). Default: hack/cluster.sh's
	// bridge gateway. On kind: the kind network's gateway.
	envHost = "SLUICE_E2E_HOST"
	// envPodCIDR is the pod network, let into PostgreSQL.
	envPodCIDR = "SLUICE_E2E_POD_CIDR"
	// envKubectl is the kubectl binary the suite runs for what users see.
	envKubectl = "SLUICE_E2E_KUBECTL"
	// envRecords scales scenario 1 (default 100,000 records).
	envRecords = "SLUICE_E2E_RECORDS"

	defaultHost    = "10.244.0.1"
	defaultPodCIDR = "10.244.0.0/24"
	k8sVersion     = "v1.37.2"
)

// env is what the suite found about where it runs.
type env struct {
	root       string // the module root
	kubeconfig string
	kubectl    string
	host       string
	podCIDR    string
}

func getenv(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// findEnv resolves the settings; every error says what to run.
func findEnv() (env, error) {
	root, err := modroot.Find()
	if err != nil {
		return env{}, err
	}
	e := env{root: root, host: getenv(envHost, defaultHost), podCIDR: getenv(envPodCIDR, defaultPodCIDR)}
	if net.ParseIP(e.host) == nil {
		return e, fmt.Errorf("%s=%q is not an IP address (pods have no DNS)", envHost, e.host)
	}
	if _, _, err := net.ParseCIDR(e.podCIDR); err != nil {
		return e, fmt.Errorf("%s: %w", envPodCIDR, err)
	}
	e.kubeconfig = os.Getenv("KUBECONFIG")
	if e.kubeconfig == "" {
		// hack/cluster.sh's admin kubeconfig, where `make cluster-up` writes it.
		e.kubeconfig = filepath.Join(root, "bin", "cluster", "admin.kubeconfig")
	}
	if _, err := os.Stat(e.kubeconfig); err != nil {
		return e, fmt.Errorf("no kubeconfig at %s (KUBECONFIG, else hack/cluster.sh's): start the cluster with `make cluster-up` "+
			"(or point KUBECONFIG at a kind cluster's)", e.kubeconfig)
	}
	e.kubectl, err = findKubectl()
	return e, err
}

// findKubectl: $SLUICE_E2E_KUBECTL, else the one hack/cluster.sh built (the
// cluster's own version), else kubectl on PATH.
func findKubectl() (string, error) {
	if k := os.Getenv(envKubectl); k != "" {
		return k, nil
	}
	cache := os.Getenv("SLUICE_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "sluice")
	}
	built := filepath.Join(cache, "k8s", k8sVersion, "kubectl")
	if _, err := os.Stat(built); err == nil {
		return built, nil
	}
	if p, err := exec.LookPath("kubectl"); err == nil {
		return p, nil
	}
	return "", errors.New("no kubectl: `hack/cluster.sh binaries` builds it into $SLUICE_CACHE/k8s/" + k8sVersion +
		", or set " + envKubectl)
}

// kubectl runs the real kubectl against the suite's cluster.
func (e env) kubectlCmd(args ...string) *exec.Cmd {
	cmd := exec.Command(e.kubectl, append([]string{"--kubeconfig", e.kubeconfig}, args...)...)
	cmd.Dir = e.root
	return cmd
}

func (e env) runKubectl(stdin string, args ...string) (string, error) {
	cmd := e.kubectlCmd(args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}
