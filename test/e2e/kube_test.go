//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// Where `make deploy` puts the operator.
const (
	operatorNamespace  = "sluice-system"
	operatorDeployment = "sluice-controller-manager"
	operatorLease      = "sluice-operator.streaming.sluice.dev"
	crdName            = "streampipelines.streaming.sluice.dev"
	pipelineLabel      = "streaming.sluice.dev/pipeline"
)

// kube holds the suite's API clients.
type kube struct {
	cfg *rest.Config
	c   client.Client
	cs  *kubernetes.Clientset
}

func newKube(kubeconfig string) (*kube, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 50, 100
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := sluicev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &kube{cfg: cfg, c: c, cs: cs}, nil
}

// preflight checks that the cluster, the CRD and the operator are there, and
// says the exact command that brings up what is missing. The suite never
// skips: it fails.
func (k *kube) preflight(ctx context.Context) error {
	if _, err := k.cs.Discovery().ServerVersion(); err != nil {
		return fmt.Errorf("the cluster at %s does not answer (%w): start it with `make cluster-up`", k.cfg.Host, err)
	}
	if _, err := k.cs.Discovery().ServerResourcesForGroupVersion(sluicev1.GroupVersion.String()); err != nil {
		return fmt.Errorf("the StreamPipeline CRD is not installed (%w): run `make image install deploy IMG=sluice:dev`", err)
	}
	d := &appsv1.Deployment{}
	if err := k.c.Get(ctx, client.ObjectKey{Namespace: operatorNamespace, Name: operatorDeployment}, d); err != nil {
		return fmt.Errorf("the operator is not deployed (%w): run `make image install deploy IMG=sluice:dev`", err)
	}
	if d.Status.AvailableReplicas < 1 {
		why := podProblems(ctx, k, operatorNamespace, "app.kubernetes.io/component=operator")
		return fmt.Errorf("the operator Deployment %s/%s has no available replica (%s): if the image is missing, run `make image` "+
			"(it imports it into the local cluster), then `kubectl -n %s rollout restart deploy/%s`",
			operatorNamespace, operatorDeployment, why, operatorNamespace, operatorDeployment)
	}
	return nil
}

// podProblems summarises why pods matching selector are not ready.
func podProblems(ctx context.Context, k *kube, ns, selector string) string {
	pods, err := k.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return err.Error()
	}
	var parts []string
	for _, p := range pods.Items {
		for _, st := range p.Status.ContainerStatuses {
			if w := st.State.Waiting; w != nil {
				parts = append(parts, fmt.Sprintf("%s: %s %s", p.Name, w.Reason, w.Message))
			}
		}
	}
	if len(parts) == 0 {
		return fmt.Sprintf("%d pods, none waiting", len(pods.Items))
	}
	return strings.Join(parts, "; ")
}

// newNamespace makes a namespace for one scenario, under the restricted Pod
// Security Standard as a careful platform team would, and deletes it at the
// end (SLUICE_E2E_KEEP=1 keeps it, to look at after a failure).
func (s *suite) newNamespace(t testing.TB, prefix string) string {
	t.Helper()
	name := fmt.Sprintf("e2e-%s-%04x", prefix, rand.IntN(0x10000))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
	}}}
	if err := s.k.c.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			s.dumpNamespace(t, name)
		}
		if os.Getenv("SLUICE_E2E_KEEP") != "" {
			t.Logf("keeping namespace %s (SLUICE_E2E_KEEP)", name)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		// Pipelines first, while the broker runs: a Delete pipeline's finalizer needs it.
		_ = s.k.c.DeleteAllOf(ctx, &sluicev1.StreamPipeline{}, client.InNamespace(name))
		_ = wait(ctx, time.Second, func() (bool, string) {
			l := &sluicev1.StreamPipelineList{}
			err := s.k.c.List(ctx, l, client.InNamespace(name))
			return err == nil && len(l.Items) == 0, fmt.Sprint("pipelines left: ", len(l.Items), err)
		})
		_ = s.k.c.Delete(ctx, ns)
	})
	return name
}

// dumpNamespace logs what a person would look at after a failure.
func (s *suite) dumpNamespace(t testing.TB, ns string) {
	out, _ := s.env.runKubectl("", "-n", ns, "get", "sp,deploy,pods", "-o", "wide")
	t.Logf("kubectl -n %s get sp,deploy,pods -o wide:\n%s", ns, out)
	out, _ = s.env.runKubectl("", "-n", ns, "get", "events", "--sort-by=.lastTimestamp")
	t.Logf("events in %s:\n%s", ns, tail(out, 40))
	pods, err := s.k.cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return
	}
	for _, p := range pods.Items {
		out, _ := s.env.runKubectl("", "-n", ns, "logs", p.Name, "--tail=30")
		t.Logf("logs of %s:\n%s", p.Name, out)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// wait polls cond every interval until it holds or ctx ends; the error says
// what cond last reported.
func wait(ctx context.Context, interval time.Duration, cond func() (bool, string)) error {
	last := ""
	for {
		ok, msg := cond()
		if ok {
			return nil
		}
		last = msg
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w; last: %s", ctx.Err(), last)
		case <-time.After(interval):
		}
	}
}

// eventually is wait with a timeout that fails the test.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := wait(ctx, 500*time.Millisecond, cond); err != nil {
		t.Fatalf("%s: not within %s: %v", what, timeout, err)
	}
}

// sample reads config/samples/streaming_v1alpha1_streampipeline_<name>.yaml
// and adapts it to the test broker, as the README quickstart tells users to:
// the bootstrap server, replication factor 1 and min.insync.replicas 1 for the
// retry and DLQ topics (one broker), no TLS or SASL (kfake serves neither).
func (s *suite) sample(t testing.TB, name, ns string) *sluicev1.StreamPipeline {
	t.Helper()
	sp := &sluicev1.StreamPipeline{}
	s.readSample(t, "streaming_v1alpha1_streampipeline_"+name+".yaml", sp)
	sp.Namespace = ns
	sp.Spec.Kafka.BootstrapServers = []string{s.bootstrap}
	sp.Spec.Kafka.TLS, sp.Spec.Kafka.SASL = nil, nil
	sp.Spec.Topics.ReplicationFactor = ptrTo[int32](1)
	sp.Spec.Topics.MinInSyncReplicas = ptrTo[int32](1)
	return sp
}

// readSample reads config/samples/<file> into obj, refusing unknown fields.
func (s *suite) readSample(t testing.TB, file string, obj any) {
	t.Helper()
	path := filepath.Join(s.env.root, "config", "samples", file)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, obj); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func ptrTo[T any](v T) *T { return &v }

func duration(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

// getPipeline reads a pipeline.
func (s *suite) getPipeline(t testing.TB, ns, name string) *sluicev1.StreamPipeline {
	t.Helper()
	sp := &sluicev1.StreamPipeline{}
	if err := s.k.c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, sp); err != nil {
		t.Fatal(err)
	}
	return sp
}

// condition returns the pipeline's condition of type ct (nil when absent).
func condition(sp *sluicev1.StreamPipeline, ct string) *metav1.Condition {
	for i := range sp.Status.Conditions {
		if sp.Status.Conditions[i].Type == ct {
			return &sp.Status.Conditions[i]
		}
	}
	return nil
}

// waitReady waits for Ready=True at the current generation.
func (s *suite) waitReady(t testing.TB, ns, name string, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("pipeline %s/%s Ready", ns, name), func() (bool, string) {
		sp := &sluicev1.StreamPipeline{}
		if err := s.k.c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, sp); err != nil {
			return false, err.Error()
		}
		c := condition(sp, sluicev1.ConditionReady)
		if c == nil {
			return false, "no Ready condition"
		}
		return c.Status == metav1.ConditionTrue && sp.Status.ObservedGeneration == sp.Generation,
			fmt.Sprintf("Ready=%s %s: %s", c.Status, c.Reason, c.Message)
	})
}

// getSP is `kubectl get sp NAME` as a user sees it: the printer columns, by
// header.
func (s *suite) getSP(t testing.TB, ns, name string) map[string]string {
	t.Helper()
	out, err := s.env.runKubectl("", "-n", ns, "get", "sp", name)
	if err != nil {
		t.Fatalf("kubectl get sp: %v\n%s", err, out)
	}
	row, err := parseTable(out)
	if err != nil {
		t.Fatalf("kubectl get sp: %v\n%s", err, out)
	}
	return row
}

// parseTable reads kubectl's one-row table output into column → value.
func parseTable(out string) (map[string]string, error) {
	sc := bufio.NewScanner(strings.NewReader(out))
	var lines []string
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) != "" {
			lines = append(lines, sc.Text())
		}
	}
	if len(lines) != 2 {
		return nil, fmt.Errorf("want a header and one row, got %d lines", len(lines))
	}
	head, vals := strings.Fields(lines[0]), strings.Fields(lines[1])
	if len(head) != len(vals) {
		return nil, fmt.Errorf("%d columns, %d values (an empty cell?)", len(head), len(vals))
	}
	row := map[string]string{}
	for i, h := range head {
		row[h] = vals[i]
	}
	return row, nil
}

// workerPods lists a pipeline's pods.
func (s *suite) workerPods(ctx context.Context, ns, pipeline string) ([]corev1.Pod, error) {
	l, err := s.k.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: pipelineLabel + "=" + pipeline})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

// deployment reads a pipeline's worker Deployment (nil when gone).
func (s *suite) deployment(ctx context.Context, ns, pipeline string) (*appsv1.Deployment, error) {
	d := &appsv1.Deployment{}
	err := s.k.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: pipeline + "-worker"}, d)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return d, err
}

// replicaWatch records every change of a Deployment's spec.replicas: the scale
// events the operator made.
type replicaWatch struct {
	mu     sync.Mutex
	events []scaleEvent
}

type scaleEvent struct {
	at       time.Time
	replicas int32
}

func (w *replicaWatch) add(at time.Time, n int32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.events) > 0 && w.events[len(w.events)-1].replicas == n {
		return
	}
	w.events = append(w.events, scaleEvent{at, n})
}

func (w *replicaWatch) snapshot() []scaleEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]scaleEvent(nil), w.events...)
}

// maxReplicas is the most replicas ever asked for.
func (w *replicaWatch) maxReplicas() int32 {
	var m int32
	for _, e := range w.snapshot() {
		m = max(m, e.replicas)
	}
	return m
}

func (w *replicaWatch) String() string {
	var parts []string
	var t0 time.Time
	for i, e := range w.snapshot() {
		if i == 0 {
			t0 = e.at
		}
		parts = append(parts, fmt.Sprintf("%d@%.1fs", e.replicas, e.at.Sub(t0).Seconds()))
	}
	return strings.Join(parts, " → ")
}

// watchReplicas polls the pipeline's Deployment every 200 ms until ctx ends.
func (s *suite) watchReplicas(ctx context.Context, ns, pipeline string) *replicaWatch {
	w := &replicaWatch{}
	go func() {
		for ctx.Err() == nil {
			if d, err := s.deployment(ctx, ns, pipeline); err == nil && d != nil && d.Spec.Replicas != nil {
				w.add(time.Now(), *d.Spec.Replicas)
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return w
}
