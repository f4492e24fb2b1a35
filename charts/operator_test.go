package charts

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-dev/sluice/internal/testenv"
)

// The tests of this file's helpers run the real manager binary against a real
// kube-apiserver (envtest, which authorizes with RBAC) as the ServiceAccount
// that an install's rendered objects create and bind, so that it has exactly
// the access the install grants.

// operatorSA is the ServiceAccount config/default runs the manager as.
const operatorSA = "sluice-controller-manager"

// startInstall starts an API server (with Sluice's CRDs) and creates every
// object of objs on it but the CRDs, which it already has, as an admin would
// with kubectl apply; it stops when the test ends.
func startInstall(t *testing.T, objs []*unstructured.Unstructured) *testenv.Env {
	t.Helper()
	env, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	// Namespaces first: the rest lives in them.
	sorted := slices.Clone(objs)
	slices.SortStableFunc(sorted, func(a, b *unstructured.Unstructured) int {
		return boolRank(b.GetKind() == "Namespace") - boolRank(a.GetKind() == "Namespace")
	})
	for _, o := range sorted {
		if o.GetKind() == "CustomResourceDefinition" {
			continue
		}
		if err := env.Client.Create(t.Context(), o.DeepCopy()); err != nil {
			t.Fatalf("create %s: %v", KeyOf(o), err)
		}
	}
	return env
}

// startInstallIn is startInstall with namespaces created first, as an admin
// does before installing Roles into them.
func startInstallIn(t *testing.T, objs []*unstructured.Unstructured, namespaces []string) *testenv.Env {
	t.Helper()
	ns := make([]*unstructured.Unstructured, 0, len(namespaces))
	for _, n := range namespaces {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("v1")
		u.SetKind("Namespace")
		u.SetName(n)
		ns = append(ns, u)
	}
	return startInstall(t, append(ns, objs...))
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

// tokenOf returns a token of the ServiceAccount ns/name (the TokenRequest
// API, as the kubelet gets a pod's), creating the ServiceAccount if it isn't
// there.
func tokenOf(t *testing.T, env *testenv.Env, ns, name string) string {
	t.Helper()
	ctx := t.Context()
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token of %s/%s: %v", ns, name, err)
	}
	return tr.Status.Token
}

// configWithToken is env's API server with only a bearer token for
// credentials (no client certificate of the admin).
func configWithToken(env *testenv.Env, token string) *rest.Config {
	return &rest.Config{
		Host:            env.Config.Host,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: env.Config.CAData},
	}
}

// clientWithToken is a client of env that authenticates with token.
func clientWithToken(t *testing.T, env *testenv.Env, token string) client.Client {
	t.Helper()
	c, err := client.New(configWithToken(env, token), client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// kubeconfigWithToken writes a kubeconfig for env and token, for the manager.
func kubeconfigWithToken(t *testing.T, env *testenv.Env, token string) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["envtest"] = &clientcmdapi.Cluster{Server: env.Config.Host, CertificateAuthorityData: env.Config.CAData}
	cfg.AuthInfos["sa"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["sa"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "sa"}
	cfg.CurrentContext = "sa"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// renderedManager returns the args and env of the manager container of the
// Deployment sluice-controller-manager in objs.
func renderedManager(t *testing.T, objs []*unstructured.Unstructured) (args []string, env []string) {
	t.Helper()
	r := rendered{t: t, objs: objs}
	c := r.manager(managerKey.Name)
	args, _, _ = unstructured.NestedStringSlice(c, "args")
	vars, _, _ := unstructured.NestedSlice(c, "env")
	for _, v := range vars {
		m, _ := v.(map[string]any)
		if s, ok := m["value"].(string); ok {
			env = append(env, m["name"].(string)+"="+s)
		}
	}
	return args, env
}

// outsideAPod turns the rendered args into what runs here: the addresses
// given (loopback, or 0 for off) instead of the pod's ports, and no leader
// election (outside a pod the manager can't tell its namespace, and the
// tests run one manager).
func outsideAPod(args []string, metricsAddr, probeAddr string) []string {
	var out []string
	for _, a := range args {
		switch {
		case a == "--leader-elect":
		case strings.HasPrefix(a, "--metrics-bind-address="):
			out = append(out, "--metrics-bind-address="+metricsAddr)
		case strings.HasPrefix(a, "--health-probe-bind-address="):
			out = append(out, "--health-probe-bind-address="+probeAddr)
		default:
			out = append(out, a)
		}
	}
	return out
}

// managerProcess is a running cmd/manager.
type managerProcess struct {
	logPath string
	exited  chan struct{}
	err     error
}

// startManager runs the manager binary with args and env (and a kubeconfig);
// it is stopped (SIGTERM, then SIGKILL) when the test ends.
func startManager(t *testing.T, kubeconfig string, args, env []string) *managerProcess {
	t.Helper()
	bin, err := buildManager()
	if err != nil {
		t.Fatal(err)
	}
	m := &managerProcess{logPath: filepath.Join(t.TempDir(), "manager.log"), exited: make(chan struct{})}
	logf, err := os.Create(m.logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append(slices.Clone(args), "--kubeconfig="+kubeconfig)...)
	// No KUBECONFIG or in-cluster fallback of the test's own environment.
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // dies with a killed test
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { m.err = cmd.Wait(); close(m.exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.exited:
		case <-time.After(20 * time.Second):
			t.Errorf("the manager did not stop within 20 s of SIGTERM: killed")
			_ = cmd.Process.Kill()
			<-m.exited
		}
		_ = logf.Close()
		if t.Failed() {
			t.Logf("manager log (%s):\n%s", m.logPath, m.log(t))
		}
	})
	return m
}

func (m *managerProcess) log(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(m.logPath)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// running fails the test if the manager has exited.
func (m *managerProcess) running(t *testing.T) {
	t.Helper()
	select {
	case <-m.exited:
		t.Fatalf("the manager exited: %v\n%s", m.err, m.log(t))
	default:
	}
}

// freeLoopbackAddr is a 127.0.0.1 address with a port nobody listens on now.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}

// eventually polls check every 200 ms until it returns true or d passes, then
// fails the test with what check said last.
func eventually(t *testing.T, d time.Duration, what string, check func(ctx context.Context) (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, last := check(t.Context())
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last: %s", what, d, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
