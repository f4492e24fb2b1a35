//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// BenchmarkTimeToAddedCapacity measures, on the real cluster, the time from a
// backlog appearing (the records produced) to the pods a scale-up adds
// consuming (each new pod's first delivery at the receiver, by its address),
// at default settings except: one broker (RF 1), a 20 s scale-down window so
// that every run starts again from one worker, and the sink. It makes
// SLUICE_E2E_BENCH_RUNS runs (5) in one invocation, so run it with
// -benchtime 1x: `make bench-e2e`. After the runs, the whole
// fleet is restarted (a rollout) right after a scale-up, and the report says
// whether its pods still waited their startup jitter.
func BenchmarkTimeToAddedCapacity(b *testing.B) {
	ns := s.newNamespace(b, "capacity")
	const partitions = 4
	s.b.createTopic(b, "capacity", partitions)
	sp := &sluicev1.StreamPipeline{}
	sp.Name, sp.Namespace = "capacity", ns
	sp.Spec.Kafka.BootstrapServers = []string{s.bootstrap}
	sp.Spec.Source.Topic = "capacity"
	sp.Spec.Sink.HTTP = &sluicev1.HTTPSink{URL: s.recv.url(ns, "capacity")}
	sp.Spec.Topics.ReplicationFactor, sp.Spec.Topics.MinInSyncReplicas = ptrTo[int32](1), ptrTo[int32](1)
	sp.Spec.Scaling.ScaleDownStabilization = duration(20 * time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.k.c.Create(ctx, sp); err != nil {
		b.Fatal(err)
	}
	logs := s.k.collectLogs(ctx, ns, pipelineLabel+"=capacity")
	scale := s.watchReplicas(ctx, ns, sp.Name)
	eventually(b, 3*time.Minute, "Ready", func() (bool, string) {
		got := &sluicev1.StreamPipeline{}
		if err := s.k.c.Get(ctx, client.ObjectKeyFromObject(sp), got); err != nil {
			return false, err.Error()
		}
		c := condition(got, sluicev1.ConditionReady)
		return c != nil && c.Status == "True", fmt.Sprint(c)
	})

	runs, err := strconv.Atoi(getenv("SLUICE_E2E_BENCH_RUNS", "5"))
	if err != nil || runs < 1 {
		b.Fatalf("SLUICE_E2E_BENCH_RUNS: want a number ≥ 1")
	}
	var firsts, alls, reacts []time.Duration
	seq := 0
	b.ResetTimer()
	for run := 0; run < runs; run++ {
		eventually(b, 3*time.Minute, "one worker, no lag", func() (bool, string) {
			d, err := s.deployment(ctx, ns, sp.Name)
			pods, _ := s.workerPods(ctx, ns, sp.Name)
			return err == nil && d != nil && *d.Spec.Replicas == 1 && len(pods) == 1 && podReady(&pods[0]), scale.String()
		})
		// Addresses that delivered before, and the running worker's.
		before := map[string]bool{}
		for a := range s.recv.report(ns, sp.Name).byAddr {
			before[a] = true
		}
		pods, _ := s.workerPods(ctx, ns, sp.Name)
		for _, p := range pods {
			before[p.Status.PodIP] = true
		}
		// The backlog: 20 × the lag threshold (1000), so 4 replicas wanted;
		// then 1,000 records/s until every new pod delivered, so that a pod
		// that joins after the backlog drained still has records to take.
		recs, good, _ := orders("capacity", fmt.Sprintf("r%d", run), seq, 20_000, 0)
		seq += len(recs)
		nEvents := len(scale.snapshot())
		t0 := time.Now()
		s.b.produce(b, recs)
		trickle, stopTrickle := context.WithCancel(ctx)
		trickled := make(chan []string, 1)
		go func() {
			var ids []string
			defer func() { trickled <- ids }()
			for i := 0; trickle.Err() == nil; i++ {
				more, g, _ := orders("capacity", fmt.Sprintf("r%dt", run), i*100, 100, 0)
				if err := s.b.cl.ProduceSync(ctx, more...).FirstErr(); err == nil {
					ids = append(ids, g...)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}()
		var news []addrTime
		eventually(b, 2*time.Minute, "3 new pods delivering", func() (bool, string) {
			news = news[:0]
			for _, f := range firstDeliveries(s.recv.report(ns, sp.Name).byAddr) {
				if !before[f.addr] {
					news = append(news, f)
				}
			}
			return len(news) >= partitions-1, fmt.Sprintf("%d new, replicas %s", len(news), scale)
		})
		stopTrickle()
		good = append(good, <-trickled...)
		react := time.Duration(0)
		for _, ev := range scale.snapshot()[nEvents:] {
			if ev.replicas > 1 && ev.at.After(t0) {
				react = ev.at.Sub(t0)
				break
			}
		}
		first, all := news[0].at.Sub(t0), news[len(news)-1].at.Sub(t0)
		firsts, alls, reacts = append(firsts, first), append(alls, all), append(reacts, react)
		fmt.Printf("run %d: replicas changed +%.1fs; new pods' first deliveries +%.1fs, +%.1fs, +%.1fs\n",
			run+1, react.Seconds(), first.Seconds(), news[1].at.Sub(t0).Seconds(), all.Seconds())
		eventually(b, 3*time.Minute, "the backlog consumed", func() (bool, string) {
			c := checkEffects(s.recv.report(ns, sp.Name).effects, good)
			return c.lost == 0, fmt.Sprintf("%d of %d", c.applied, len(good))
		})
	}
	b.StopTimer()
	b.ReportMetric(median(reacts).Seconds(), "s-to-scale/median")
	b.ReportMetric(median(firsts).Seconds(), "s-to-first-new-pod/median")
	b.ReportMetric(median(alls).Seconds(), "s-to-all-new-pods/median")
	b.ReportMetric(maxOf(alls).Seconds(), "s-to-all-new-pods/max")

	// A whole-fleet restart right after a scale-up: staggered or not?
	eventually(b, 3*time.Minute, "one worker", func() (bool, string) {
		d, err := s.deployment(ctx, ns, sp.Name)
		return err == nil && d != nil && *d.Spec.Replicas == 1, scale.String()
	})
	recs, _, _ := orders("capacity", "fleet", seq, 20_000, 0)
	s.b.produce(b, recs)
	eventually(b, 2*time.Minute, "scaled to 4", func() (bool, string) {
		d, err := s.deployment(ctx, ns, sp.Name)
		return err == nil && d != nil && *d.Spec.Replicas == 4, scale.String()
	})
	restartAt := time.Now()
	if out, err := s.env.runKubectl("", "-n", ns, "rollout", "restart", "deploy/capacity-worker"); err != nil {
		b.Fatalf("%v: %s", err, out)
	}
	if out, err := s.env.runKubectl("", "-n", ns, "rollout", "status", "deploy/capacity-worker", "--timeout=4m"); err != nil {
		b.Fatalf("%v: %s", err, out)
	}
	// The restarted pods: those of the Deployment now.
	restarted := map[string]bool{}
	pods, _ := s.workerPods(ctx, ns, sp.Name)
	for _, p := range pods {
		if p.DeletionTimestamp == nil {
			restarted[p.Name] = true
		}
	}
	jittered, skipped := 0, 0
	for _, l := range logs.grep(`"startup jitter"`) {
		if restarted[l.pod] {
			jittered++
		}
	}
	for _, l := range logs.grep("without startup jitter") {
		if restarted[l.pod] {
			skipped++
		}
	}
	fmt.Printf("fleet restart %.0fs after a scale-up to 4: %d pods waited a startup jitter, %d joined without (scale-up hint); rollout took %.1fs\n",
		restartAt.Sub(scale.snapshot()[len(scale.snapshot())-1].at).Seconds(), jittered, skipped, time.Since(restartAt).Seconds())
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func maxOf(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}
