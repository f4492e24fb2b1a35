package demo

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-dev/sluice/internal/render"
)

// podRunner stands in for the kubelet (and for the Deployment and ReplicaSet
// controllers, which envtest doesn't run). For every Deployment a
// StreamPipeline owns it runs spec.replicas real worker processes, each with
// what its pod would get (see podspec.go), follows replica and template
// changes with the Deployment's rolling-update strategy, restarts a process
// that exits with backoff, stops processes with SIGTERM and the grace period,
// and writes the Deployment's status. It does not schedule, isolate, limit
// resources or network: a pod here is a process in a folder.
type podRunner struct {
	c        client.Client
	image    imageFS
	dir      string // <state>/pods
	node     string
	memory   int64
	events   func(format string, args ...any)
	restarts atomic.Int64

	mu          sync.Mutex
	deployments map[types.NamespacedName]*runnerDeployment
	scales      []scaleChange

	// acting is held while pods are started or stopped, and by chaos while
	// it checks a group and kills a worker: no join or leave of ours starts
	// a rebalance in between.
	acting sync.Mutex
}

// runnerDeployment is the runner's view of one Deployment.
type runnerDeployment struct {
	pipeline string
	desired  int32
	pods     map[string]*localPod
}

// scaleChange is a change of a Deployment's spec.replicas the runner acted on.
type scaleChange struct {
	Pipeline string    `json:"pipeline"`
	At       time.Time `json:"at"`
	From     int32     `json:"from"`
	To       int32     `json:"to"`
}

func newPodRunner(c client.Client, workerBinary, stateDir string, events func(string, ...any)) *podRunner {
	return &podRunner{
		c:           c,
		image:       imageFS{render.WorkerBinary: workerBinary},
		dir:         filepath.Join(stateDir, "pods"),
		node:        "sluice-demo",
		memory:      nodeMemory(),
		events:      events,
		deployments: map[types.NamespacedName]*runnerDeployment{},
	}
}

// run syncs every 250 ms until ctx ends, then stops every pod.
func (r *podRunner) run(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		r.sync(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// stopAll terminates every pod, all at once, each with its grace period.
func (r *podRunner) stopAll(ctx context.Context) {
	r.mu.Lock()
	var all []*localPod
	for _, d := range r.deployments {
		for _, p := range d.pods {
			all = append(all, p)
		}
	}
	r.mu.Unlock()
	for _, p := range all {
		p.terminate(ctx)
	}
	for _, p := range all {
		<-p.done
	}
}

// sync brings every owned Deployment's pods in line with its spec and writes
// its status.
func (r *podRunner) sync(ctx context.Context) {
	list := &appsv1.DeploymentList{}
	if err := r.c.List(ctx, list); err != nil {
		return
	}
	seen := map[types.NamespacedName]bool{}
	for i := range list.Items {
		d := &list.Items[i]
		owner := metav1.GetControllerOf(d)
		if owner == nil || owner.Kind != "StreamPipeline" {
			continue // the pod runner runs only the workers of StreamPipelines
		}
		key := client.ObjectKeyFromObject(d)
		seen[key] = true
		r.syncDeployment(ctx, key, owner.Name, d)
	}
	r.mu.Lock()
	var gone []*runnerDeployment
	for key, rd := range r.deployments {
		if !seen[key] {
			gone = append(gone, rd)
			delete(r.deployments, key)
		}
	}
	r.mu.Unlock()
	for _, rd := range gone {
		for _, p := range rd.pods {
			p.terminate(ctx)
		}
	}
}

func (r *podRunner) syncDeployment(ctx context.Context, key types.NamespacedName, pipeline string, d *appsv1.Deployment) {
	revision := templateHash(d.Spec.Template)
	desired := ptr.Deref(d.Spec.Replicas, 1)

	r.mu.Lock()
	rd := r.deployments[key]
	switch {
	case rd == nil:
		rd = &runnerDeployment{pipeline: pipeline, desired: desired, pods: map[string]*localPod{}}
		r.deployments[key] = rd
	case rd.desired != desired:
		r.scales = append(r.scales, scaleChange{Pipeline: pipeline, At: time.Now(), From: rd.desired, To: desired})
		r.events("%s: spec.replicas %d → %d", d.Name, rd.desired, desired)
		rd.desired = desired
	}
	// Forget pods whose process is gone for good.
	for name, p := range rd.pods {
		select {
		case <-p.done:
			delete(rd.pods, name)
		default:
		}
	}
	states := make([]podState, 0, len(rd.pods))
	for _, p := range rd.pods {
		states = append(states, p.state())
	}
	r.mu.Unlock()

	surge, unavailable := surgeAndUnavailable(d.Spec.Strategy, int(desired))
	plan := planRollout(int(desired), revision, surge, unavailable, states)
	r.acting.Lock()
	defer r.acting.Unlock()
	for _, name := range plan.Stop {
		r.mu.Lock()
		p := rd.pods[name]
		r.mu.Unlock()
		if p != nil {
			r.events("stopping %s: SIGTERM, grace period %s", name, p.launch.Grace)
			p.terminate(ctx)
		}
	}
	for range plan.Start {
		p, err := r.newPod(ctx, d, revision)
		if err != nil {
			// What the kubelet reports as CreateContainerConfigError; the next
			// sync tries again.
			r.events("cannot start a pod of %s: %v", d.Name, err)
			break
		}
		r.mu.Lock()
		rd.pods[p.Name] = p
		r.mu.Unlock()
		go p.run()
		r.events("started %s (pid %d)", p.Name, waitPID(p))
	}

	r.mu.Lock()
	states = states[:0]
	for _, p := range rd.pods {
		states = append(states, p.state())
	}
	r.mu.Unlock()
	st := deploymentStatus(d, revision, states, metav1.Now())
	if !equality.Semantic.DeepEqual(ignoreTimes(d.Status), ignoreTimes(st)) {
		d.Status = st
		_ = r.c.Status().Update(ctx, d) // a conflict is retried by the next sync
	}
}

func ignoreTimes(st appsv1.DeploymentStatus) appsv1.DeploymentStatus {
	st = *st.DeepCopy()
	for i := range st.Conditions {
		st.Conditions[i].LastUpdateTime, st.Conditions[i].LastTransitionTime = metav1.Time{}, metav1.Time{}
	}
	return st
}

// waitPID waits briefly for the pod's first process to start, for the log line.
func waitPID(p *localPod) int {
	for range 20 {
		if pid := p.pid(); pid != 0 {
			return pid
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0
}

// newPod materializes a pod of d's current template.
func (r *podRunner) newPod(ctx context.Context, d *appsv1.Deployment, revision string) (*localPod, error) {
	name := fmt.Sprintf("%s-%s-%s", d.Name, revision[:10], randomSuffix())
	labels := maps.Clone(d.Spec.Template.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[appsv1.DefaultDeploymentUniqueLabelKey] = revision[:10]
	id := podIdentity{
		Name: name, Namespace: d.Namespace, UID: randomSuffix() + randomSuffix(),
		Labels: labels, Annotations: d.Spec.Template.Annotations,
		ServiceAccount: d.Spec.Template.Spec.ServiceAccountName,
		NodeName:       r.node, IP: "127.0.0.1", NodeMemory: r.memory,
	}
	dir := filepath.Join(r.dir, d.Namespace, name)
	objs := apiObjects{ctx: ctx, c: r.c, namespace: d.Namespace}
	l, err := materialize(d.Spec.Template.Spec, id, objs, r.image, dir, freePort)
	if err != nil {
		return nil, err
	}
	p := &localPod{
		Name: name, Namespace: d.Namespace, Deployment: d.Name, Revision: revision, Dir: dir,
		launch: l, events: r.events, started: time.Now(),
		onRestart: func() { r.restarts.Add(1) },
		stop:      make(chan struct{}), done: make(chan struct{}),
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := p.writeFiles(); err != nil {
		return nil, err
	}
	if err := writeLaunchRecord(dir, l); err != nil {
		return nil, err
	}
	return p, nil
}

// writeLaunchRecord leaves, next to the pod's logs, what the process was given.
func writeLaunchRecord(dir string, l *launch) error {
	var b strings.Builder
	b.WriteString("# What the pod runner gave this pod's process (it stands in for a kubelet).\n")
	fmt.Fprintf(&b, "argv: %q\n", l.Argv)
	b.WriteString("env:\n")
	for _, e := range l.Env {
		fmt.Fprintf(&b, "  %s\n", e)
	}
	b.WriteString("mounts (container path → folder):\n")
	for _, m := range l.Mounts {
		fmt.Fprintf(&b, "  %s → %s\n", m.MountPath, m.HostDir)
	}
	fmt.Fprintf(&b, "ports (container → 127.0.0.1): %v\ngrace period: %s\n", l.Ports, l.Grace)
	return os.WriteFile(filepath.Join(dir, "pod.txt"), []byte(b.String()), 0o644)
}

// runningPod is a pod as chaos and the view see it.
type runningPod struct {
	Pipeline, Name string
	PID            int
	Ready          bool
	Restarts       int
	MetricsURL     string
	// RunningFor is how long the current process has run; SinceExit how
	// long ago a process of this pod last exited (-1: never).
	RunningFor, SinceExit time.Duration
	pod                   *localPod
}

// pods lists every pod that is not terminating, by pipeline then name.
func (r *podRunner) pods() []runningPod {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []runningPod
	for _, rd := range r.deployments {
		for _, p := range rd.pods {
			p.mu.Lock()
			if !p.terminating {
				rp := runningPod{Pipeline: rd.pipeline, Name: p.Name, Ready: p.ready, Restarts: p.restarts, pod: p, SinceExit: -1}
				if p.cmd != nil && p.cmd.Process != nil {
					rp.PID = p.cmd.Process.Pid
					rp.RunningFor = time.Since(p.running)
				}
				if !p.lastExit.IsZero() {
					rp.SinceExit = time.Since(p.lastExit)
				}
				if hp, ok := p.launch.Ports[render.HealthPort]; ok {
					rp.MetricsURL = "http://127.0.0.1:" + strconv.Itoa(int(hp)) + "/metrics"
				}
				out = append(out, rp)
			}
			p.mu.Unlock()
		}
	}
	slices.SortFunc(out, func(a, b runningPod) int { return strings.Compare(a.Pipeline+"/"+a.Name, b.Pipeline+"/"+b.Name) })
	return out
}

// scaleChanges returns the replica changes seen so far.
func (r *podRunner) scaleChanges() []scaleChange {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.scales)
}

// templateHash names a pod template's revision, as pod-template-hash does.
func templateHash(t corev1.PodTemplateSpec) string {
	b, _ := json.Marshal(t)
	return render.Hash(b)
}

func randomSuffix() string {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789" // the ReplicaSet controller's
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func freePort() (int32, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = ln.Close() }()
	return int32(ln.Addr().(*net.TCPAddr).Port), nil
}

// nodeMemory is this machine's memory, which the Downward API reports as the
// limit of a container that has none.
func nodeMemory() int64 {
	f, err := os.Open("/proc/meminfo")
	if err == nil {
		defer func() { _ = f.Close() }()
		s := bufio.NewScanner(f)
		for s.Scan() {
			if v, ok := strings.CutPrefix(s.Text(), "MemTotal:"); ok {
				kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				if err == nil {
					return kb << 10
				}
			}
		}
	}
	return 8 << 30
}

// apiObjects reads a pod's ConfigMaps and Secrets from the API server.
type apiObjects struct {
	ctx       context.Context
	c         client.Client
	namespace string
}

func (o apiObjects) ConfigMap(name string) (*corev1.ConfigMap, error) {
	cm := &corev1.ConfigMap{}
	if err := o.c.Get(o.ctx, client.ObjectKey{Namespace: o.namespace, Name: name}, cm); err != nil {
		return nil, fmt.Errorf("ConfigMap %s: %w", name, err)
	}
	return cm, nil
}

func (o apiObjects) Secret(name string) (*corev1.Secret, error) {
	s := &corev1.Secret{}
	if err := o.c.Get(o.ctx, client.ObjectKey{Namespace: o.namespace, Name: name}, s); err != nil {
		return nil, fmt.Errorf("Secret %s: %w", name, err)
	}
	return s, nil
}
