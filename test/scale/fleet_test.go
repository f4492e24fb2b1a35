// Package scale measures the operator as users run it: the cmd/manager binary,
// as its own process, against a real kube-apiserver (envtest) and one Kafka.
package scale

import (
	"context"
	"fmt"
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
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/modroot"
	"github.com/sluice-dev/sluice/internal/procstat"
	"github.com/sluice-dev/sluice/internal/testenv"
)

// BenchmarkFleet applies SLUICE_BENCH_PIPELINES (default 1,000) pipelines, one
// source topic each, against one envtest and one in-process kfake (3 brokers),
// with the operator binary running as a separate process. It reports the time
// until all are Ready, and over 10 steady poll cycles (2 s) the operator's CPU
// time per cycle, its peak RSS, and the Kafka requests per cycle by API.
func BenchmarkFleet(b *testing.B) {
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("SLUICE_BENCH_PIPELINES")); err == nil && v > 0 {
		n = v
	}
	ctx := context.Background()
	env, err := testenv.Start()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = env.Stop() })
	k8s := env.Client

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
	if _, err := kadm.NewClient(cl).CreateTopics(ctx, 1, 3, nil, topics...); err != nil {
		b.Fatal(err)
	}
	requests := countRequests(kafka)

	operator := startOperator(b, env)

	for b.Loop() {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "fleet-"}}
		if err := k8s.Create(ctx, ns); err != nil {
			b.Fatal(err)
		}
		playCtx, stop := context.WithCancel(ctx)
		go testenv.PlayDeploymentController(playCtx, k8s, ns.Name)

		start := time.Now()
		for i := range n {
			sp := &sluicev1.StreamPipeline{
				ObjectMeta: metav1.ObjectMeta{Name: topics[i], Namespace: ns.Name},
				Spec: sluicev1.StreamPipelineSpec{
					Kafka:  sluicev1.KafkaSpec{BootstrapServers: kafka.ListenAddrs()},
					Source: sluicev1.SourceSpec{Topic: topics[i]},
					Sink:   sluicev1.SinkSpec{Log: &sluicev1.LogSink{}},
				},
			}
			if err := k8s.Create(ctx, sp); err != nil {
				b.Fatal(err)
			}
		}
		waitAllReady(b, k8s, ns.Name, n, start)
		allReady := time.Since(start)

		time.Sleep(4 * time.Second) // let the last wake-ups settle
		const cycles = 10
		before, cpu0 := requests(), processCPU(b, operator)
		time.Sleep(cycles * sluicev1.DefaultPollInterval)
		cpu, after := processCPU(b, operator)-cpu0, requests()
		stop()

		b.ReportMetric(allReady.Seconds(), "s-to-all-ready")
		b.ReportMetric(float64(cpu.Milliseconds())/cycles, "operator-cpu-ms/cycle")
		b.ReportMetric(float64(peakRSS(b, operator))/(1<<20), "operator-peak-rss-MiB")
		var total int64
		for name, v := range after {
			d := v - before[name]
			total += d
			b.ReportMetric(float64(d)/cycles, name+"-req/cycle")
		}
		b.ReportMetric(float64(total)/cycles, "kafka-req/cycle")
		b.ReportMetric(0, "ns/op")
	}
}

// startOperator builds cmd/manager and runs it against env.
func startOperator(b *testing.B, env *testenv.Env) int {
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
	args := []string{"--metrics-bind-address=0", "--health-probe-bind-address=0", "--worker-image=sluice:bench"}
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
	})
	return cmd.Process.Pid
}

func waitAllReady(b *testing.B, k8s client.Client, ns string, n int, start time.Time) {
	b.Helper()
	for {
		list := &sluicev1.StreamPipelineList{}
		if err := k8s.List(context.Background(), list, client.InNamespace(ns)); err != nil {
			b.Fatal(err)
		}
		ready := 0
		for i := range list.Items {
			if meta.IsStatusConditionTrue(list.Items[i].Status.Conditions, sluicev1.ConditionReady) {
				ready++
			}
		}
		if ready == n {
			return
		}
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("%d of %d pipelines Ready after 5 minutes", ready, n)
		}
		time.Sleep(250 * time.Millisecond)
	}
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
