package controllers

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/render"
)

// BenchmarkScaleUpReaction measures the time from a backlog appearing (the
// produce acknowledged) to the worker Deployment's replicas changing, with the
// default 2 s lag poll. Each run waits a random part of a poll interval before
// producing, so runs sample every phase of the poll schedule. Run with
// -benchtime 10x (or more); it reports the median and the worst run.
func BenchmarkScaleUpReaction(b *testing.B) {
	ctx := context.Background()
	k := newKafka(b, 1) // the source topics are created per run below
	var reactions []time.Duration
	for i := 0; b.Loop(); i++ {
		topic := fmt.Sprintf("reaction-%d", i)
		if _, err := k.adm.CreateTopic(ctx, 8, 3, nil, topic); err != nil {
			b.Fatal(err)
		}
		ns := newNamespace(b)
		sp := logPipeline(ns, "reaction")
		sp.Spec.Kafka.BootstrapServers = k.cluster.ListenAddrs()
		sp.Spec.Source.Topic = topic
		sp.Spec.Scaling = sluicev1.ScalingSpec{LagThreshold: new(int64(100)), MaxScaleUpStep: new(int32(8))}
		if err := k8s.Create(ctx, sp); err != nil {
			b.Fatal(err)
		}
		// Steady: the workload exists and the lag has been measured.
		waitFor(b, 20*time.Second, func() bool {
			p := &sluicev1.StreamPipeline{}
			return k8s.Get(ctx, client.ObjectKeyFromObject(sp), p) == nil && p.Status.Lag != nil && replicasOf(ctx, sp) == 1
		})
		time.Sleep(time.Duration(rand.Int64N(int64(sluicev1.DefaultPollInterval))))

		var rs []int32
		for p := range int32(8) {
			rs = append(rs, p)
		}
		k.produce(b, topic, rs, 100, time.Now())
		start := time.Now()
		waitFor(b, 20*time.Second, func() bool { return replicasOf(ctx, sp) > 1 })
		reactions = append(reactions, time.Since(start))
		if err := k8s.Delete(ctx, sp); err != nil {
			b.Fatal(err)
		}
	}
	slices.Sort(reactions)
	b.ReportMetric(float64(reactions[len(reactions)/2].Milliseconds()), "median-ms")
	b.ReportMetric(float64(reactions[len(reactions)-1].Milliseconds()), "worst-ms")
	b.ReportMetric(float64(reactions[0].Milliseconds()), "best-ms")
	b.ReportMetric(0, "ns/op")
}

// replicasOf reads the Deployment's replicas from the API server (not a cache).
func replicasOf(ctx context.Context, sp *sluicev1.StreamPipeline) int32 {
	d := &appsv1.Deployment{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: sp.Namespace, Name: render.WorkerName(sp)}, d); err != nil {
		return -1
	}
	return ptr.Deref(d.Spec.Replicas, -1)
}

func waitFor(b *testing.B, limit time.Duration, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("condition not met within %s", limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// BenchmarkThousandPipelines applies SLUICE_BENCH_PIPELINES (default 1,000)
// pipelines against one envtest and one kfake, plays the Deployment controller
// for them, and reports: the time until all are Ready, then over 10 steady poll
// cycles the CPU time per cycle, the Kafka requests per cycle by API, and the
// process's peak RSS. The operator shares the process with kfake and the test
// client, so CPU and RSS are upper bounds for the operator alone.
func BenchmarkThousandPipelines(b *testing.B) {
	ctx := context.Background()
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("SLUICE_BENCH_PIPELINES")); err == nil && v > 0 {
		n = v
	}
	// The suite resyncs every 2 s to test drift convergence; measure the
	// operator's default.
	resync := reconciler.ResyncInterval
	reconciler.ResyncInterval = 5 * time.Minute
	defer func() { reconciler.ResyncInterval = resync }()
	for b.Loop() {
		k := newKafka(b, 1)
		topics := make([]string, n)
		for i := range topics {
			topics[i] = fmt.Sprintf("fleet-%d", i)
		}
		if _, err := k.adm.CreateTopics(ctx, 1, 3, nil, topics...); err != nil {
			b.Fatal(err)
		}
		var requests sync.Map // API key → *atomic.Int64
		for _, key := range []kmsg.Key{kmsg.Metadata, kmsg.ListOffsets, kmsg.OffsetFetch, kmsg.DescribeGroups, kmsg.Fetch, kmsg.CreateTopics, kmsg.DescribeConfigs} {
			c, _ := requests.LoadOrStore(key.Name(), new(atomic.Int64))
			k.cluster.ControlKey(int16(key), func(kmsg.Request) (kmsg.Response, error, bool) {
				k.cluster.KeepControl()
				c.(*atomic.Int64).Add(1)
				return nil, nil, false
			})
		}

		ns := newNamespace(b)
		stop := make(chan struct{})
		go playDeploymentController(ctx, ns, stop)
		defer close(stop)

		start := time.Now()
		for i := range n {
			sp := logPipeline(ns, fmt.Sprintf("fleet-%d", i))
			sp.Spec.Kafka.BootstrapServers = k.cluster.ListenAddrs()
			sp.Spec.Source.Topic = topics[i]
			if err := k8s.Create(ctx, sp); err != nil {
				b.Fatal(err)
			}
		}
		for ready := 0; ready < n; {
			if time.Since(start) > 5*time.Minute {
				b.Fatalf("%d of %d pipelines Ready after 5 minutes", ready, n)
			}
			time.Sleep(500 * time.Millisecond)
			list := &sluicev1.StreamPipelineList{}
			if err := k8s.List(ctx, list, client.InNamespace(ns)); err != nil {
				b.Fatal(err)
			}
			ready = 0
			for i := range list.Items {
				if meta.IsStatusConditionTrue(list.Items[i].Status.Conditions, sluicev1.ConditionReady) {
					ready++
				}
			}
		}
		allReady := time.Since(start)

		// Steady state: 10 poll cycles of the default 2 s.
		time.Sleep(4 * time.Second)
		const cycles = 10
		before := counts(&requests)
		cpu0 := cpuTime()
		time.Sleep(cycles * sluicev1.DefaultPollInterval)
		cpu := cpuTime() - cpu0
		after := counts(&requests)

		b.ReportMetric(allReady.Seconds(), "s-to-all-ready")
		b.ReportMetric(float64(cpu.Milliseconds())/cycles, "cpu-ms/cycle")
		b.ReportMetric(float64(peakRSS())/(1<<20), "peak-rss-MiB")
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

// playDeploymentController marks every Deployment in ns rolled out, as the
// kube-controller-manager (absent from envtest) would.
func playDeploymentController(ctx context.Context, ns string, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(250 * time.Millisecond):
		}
		list := &appsv1.DeploymentList{}
		if err := k8s.List(ctx, list, client.InNamespace(ns)); err != nil {
			continue
		}
		for i := range list.Items {
			d := &list.Items[i]
			n := ptr.Deref(d.Spec.Replicas, 1)
			if d.Status.ObservedGeneration == d.Generation && d.Status.UpdatedReplicas == n && d.Status.AvailableReplicas == n {
				continue
			}
			d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n}
			_ = k8s.Status().Update(ctx, d)
		}
	}
}

func counts(m *sync.Map) map[string]int64 {
	out := map[string]int64{}
	m.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return out
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// peakRSS is the process's high-water resident set (VmHWM), in bytes.
func peakRSS() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return -1
}
