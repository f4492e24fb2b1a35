// Package scale measures the operator as users run it: the cmd/manager binary,
// as its own process, against a real kube-apiserver (envtest) and one Kafka.
package scale

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/modroot"
	"github.com/sluice-dev/sluice/internal/procstat"
	"github.com/sluice-dev/sluice/internal/testenv"
)

// BenchmarkFleet applies SLUICE_BENCH_PIPELINES (default 1,000) pipelines, one
// source topic each, against one envtest and one in-process kfake (3 brokers),
// with the operator binary running as a separate process. The topics stay
// empty and the groups have no offsets. It reports the time until all are
// Ready, and over the steady poll cycles after that what fleetWindow measures.
func BenchmarkFleet(b *testing.B) { runFleet(b, nil) }

// settleTime is the wait between all pipelines Ready and the measured window:
// the last wake-ups of the roll-out settle, and so do the lag conditions that
// need a whole health window of samples (10 × 2 s).
const settleTime = 24 * time.Second

// windowCycles is the measured window, in poll cycles of 2 s: 60 s, six
// default --status-sync-periods.
const windowCycles = 30

// loadFunc starts traffic on the fleet's topics for their pipelines' consumer
// groups (groups[i] reads topics[i]) and returns a function that stops it and
// reports what it did; nil runs an idle fleet.
type loadFunc func(ctx context.Context, b *testing.B, f *fleet, groups []string) (stop func())

// fleet is the benchmark's world: the API server, the Kafka cluster with the
// pipelines' source topics, and the operator process.
type fleet struct {
	n        int
	env      *testenv.Env
	kafka    *kfake.Cluster
	client   *kgo.Client
	topics   []string
	requests func() map[string]int64
	operator *operator
}

func runFleet(b *testing.B, load loadFunc) {
	f := startFleet(b)
	ctx := context.Background()
	k8s := f.env.Client
	for b.Loop() {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "fleet-"}}
		if err := k8s.Create(ctx, ns); err != nil {
			b.Fatal(err)
		}
		playCtx, stopPlay := context.WithCancel(ctx)
		go testenv.PlayDeploymentController(playCtx, k8s, ns.Name)
		stopLoad := func() {}
		if load != nil {
			groups := make([]string, f.n)
			for i, t := range f.topics {
				groups[i] = ns.Name + "." + t // the pipelines' default group
			}
			stopLoad = load(ctx, b, f, groups)
		}

		fw := watchFleet(b, f, ns.Name)
		writes0, err := apiServerWrites(ctx, f.env.Config)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for i := range f.n {
			sp := &sluicev1.StreamPipeline{
				ObjectMeta: metav1.ObjectMeta{Name: f.topics[i], Namespace: ns.Name},
				Spec: sluicev1.StreamPipelineSpec{
					Kafka:  sluicev1.KafkaSpec{BootstrapServers: f.kafka.ListenAddrs()},
					Source: sluicev1.SourceSpec{Topic: f.topics[i]},
					Sink:   sluicev1.SinkSpec{Log: &sluicev1.LogSink{}},
				},
			}
			fw.creating(sp.Name)
			if err := k8s.Create(ctx, sp); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(time.Since(start).Seconds(), "s-to-all-created")
		fw.waitAllReady(b, start)
		b.ReportMetric(time.Since(start).Seconds(), "s-to-all-ready")
		fw.reportReadyLatency(b)
		reportRolloutWrites(b, f, writes0)

		time.Sleep(settleTime)
		measureWindow(b, f, fw, ns.Name)
		stopLoad()
		stopPlay()
		b.ReportMetric(0, "ns/op")
	}
}

// startFleet starts the API server, the Kafka cluster with one single-partition
// source topic per pipeline, and the operator.
func startFleet(b *testing.B) *fleet {
	b.Helper()
	// The benchmark's own controller-runtime clients have nothing to say.
	ctrllog.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("SLUICE_BENCH_PIPELINES")); err == nil && v > 0 {
		n = v
	}
	env, err := testenv.Start()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = env.Stop() })

	kafka, err := kfake.NewCluster(kfake.NumBrokers(3))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(kafka.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafka.ListenAddrs()...))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cl.Close)
	topics := make([]string, n)
	for i := range topics {
		topics[i] = fmt.Sprintf("fleet-%d", i)
	}
	if _, err := kadm.NewClient(cl).CreateTopics(context.Background(), 1, 3, nil, topics...); err != nil {
		b.Fatal(err)
	}
	f := &fleet{n: n, env: env, kafka: kafka, client: cl, topics: topics}
	f.requests = countRequests(kafka)
	f.operator = startOperator(b, env)
	return f
}

// operator is the running cmd/manager process.
type operator struct {
	pid int
	// metricsURL is its Prometheus endpoint (controller-runtime's metrics).
	metricsURL string
}

// startOperator builds cmd/manager and runs it against env, its metrics
// endpoint on a free loopback port.
func startOperator(b *testing.B, env *testenv.Env) *operator {
	b.Helper()
	root, err := modroot.Find()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	bin := filepath.Join(dir, "manager")
	build := exec.Command("go", "build", "-o", bin, "./cmd/manager")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build manager: %v\n%s", err, out)
	}
	kubeconfig, err := env.KubeConfig()
	if err != nil {
		b.Fatal(err)
	}
	kc := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kc, kubeconfig, 0o600); err != nil {
		b.Fatal(err)
	}
	logs, err := os.Create(filepath.Join(dir, "manager.log"))
	if err != nil {
		b.Fatal(err)
	}
	metricsAddr := freeLoopbackAddr(b)
	// Plain HTTP: the benchmark scrapes the manager itself (in a cluster it
	// serves HTTPS with a token; docs/security.md).
	args := []string{"--metrics-bind-address=" + metricsAddr, "--metrics-secure=false", "--health-probe-bind-address=0", "--worker-image=sluice:bench"}
	args = append(args, strings.Fields(os.Getenv("SLUICE_BENCH_OPERATOR_FLAGS"))...) // e.g. --max-concurrent-reconciles=16
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kc)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		_ = logs.Close()
		if b.Failed() {
			reportLogTail(b, logs.Name())
		}
	})
	return &operator{pid: cmd.Process.Pid, metricsURL: "http://" + metricsAddr + "/metrics"}
}

// reportLogTail logs the end of the operator's log of a failed run, which
// the temporary folder would take with it.
func reportLogTail(b *testing.B, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		b.Log(err)
		return
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	b.Logf("last %d lines of the operator's log:\n%s", min(len(lines), 40), strings.Join(lines[max(len(lines)-40, 0):], "\n"))
}

// freeLoopbackAddr is a loopback address with a port nobody listens on now.
func freeLoopbackAddr(b *testing.B) string {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	return addr
}

// reportRolloutWrites reports the writes the API server served from before
// the first pipeline was created until all were Ready, per pipeline, by verb
// and resource: what a pipeline costs the API server on its way to Ready.
func reportRolloutWrites(b *testing.B, f *fleet, before apiCounts) {
	b.Helper()
	after, err := apiServerWrites(context.Background(), f.env.Config)
	if err != nil {
		b.Fatal(err)
	}
	after.minus(before).report(b, "rollout-", float64(f.n), "writes/pipeline")
}

// countRequests counts the Kafka requests the cluster serves, by API, and
// returns a function that reads the counts.
func countRequests(c *kfake.Cluster) func() map[string]int64 {
	var m sync.Map
	for _, key := range []kmsg.Key{kmsg.Metadata, kmsg.ListOffsets, kmsg.OffsetFetch, kmsg.DescribeGroups, kmsg.Fetch, kmsg.CreateTopics, kmsg.DescribeConfigs} {
		n, _ := m.LoadOrStore(key.Name(), new(atomic.Int64))
		c.ControlKey(int16(key), func(kmsg.Request) (kmsg.Response, error, bool) {
			c.KeepControl()
			n.(*atomic.Int64).Add(1)
			return nil, nil, false
		})
	}
	return func() map[string]int64 {
		out := map[string]int64{}
		m.Range(func(k, v any) bool {
			out[k.(string)] = v.(*atomic.Int64).Load()
			return true
		})
		return out
	}
}

func processCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	d, err := procstat.CPUTime(pid)
	if err != nil {
		b.Fatal(err)
	}
	return d
}

func peakRSS(b *testing.B, pid int) int64 {
	b.Helper()
	n, err := procstat.PeakRSS(pid)
	if err != nil {
		b.Fatal(err)
	}
	return n
}
