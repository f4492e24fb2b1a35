package controllers

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
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
		b.Logf("run %d: %s", i, reactions[len(reactions)-1])
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
