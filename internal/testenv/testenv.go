// Package testenv starts a real kube-apiserver and etcd (controller-runtime's
// envtest) with Sluice's CRDs installed, for tests that need the API server's
// real validation, defaulting and server-side apply.
//
// The binaries come from hack/build-envtest.sh (`make envtest`), which builds
// them from the Go module proxy. When they are missing the tests fail and say
// so; they never skip.
package testenv

import (
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/modroot"
)

// K8sVersion is the kube-apiserver version the tests run against; keep it in
// step with K8S_VERSION in the Makefile.
const K8sVersion = "v1.37.2"

// Env is a running API server with a client.
type Env struct {
	Config *rest.Config
	Client client.Client
	Scheme *runtime.Scheme
	env    *envtest.Environment
}

// ModuleRoot finds the directory holding go.mod, from the working directory up.
func ModuleRoot() (string, error) { return modroot.Find() }

// CacheDir is where heavy builds are cached by version, outside any clone:
// $SLUICE_CACHE, else ~/.cache/sluice (the Makefile's default too).
func CacheDir() string {
	if d := os.Getenv("SLUICE_CACHE"); d != "" {
		return d
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".cache", "sluice")
	}
	return filepath.Join(os.TempDir(), "sluice-cache")
}

// assets returns the folder holding etcd and kube-apiserver.
func assets() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		dir = filepath.Join(CacheDir(), "k8s", K8sVersion)
	}
	for _, bin := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			return "", fmt.Errorf("envtest binary %s not found in %s: run `make envtest` "+
				"(builds etcd and kube-apiserver from the Go module proxy into %s)", bin, dir, filepath.Join(CacheDir(), "k8s", K8sVersion))
		}
	}
	return dir, nil
}

// Start runs etcd and kube-apiserver with the CRDs from config/crd/bases.
func Start() (*Env, error) {
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	dir, err := assets()
	if err != nil {
		return nil, err
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := sluicev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: dir,
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		Scheme:                scheme,
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("start envtest (etcd + kube-apiserver from %s): %w", dir, err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	return &Env{Config: cfg, Client: c, Scheme: scheme, env: env}, nil
}

// Stop stops the API server and etcd.
func (e *Env) Stop() error { return e.env.Stop() }

// KubeConfig returns a kubeconfig for a cluster-admin user of this API server,
// for running a process (the operator binary) against it.
func (e *Env) KubeConfig() ([]byte, error) {
	u, err := e.env.AddUser(envtest.User{Name: "sluice-operator", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	return u.KubeConfig()
}
