//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// Scenario 4: a config change rolls three busy workers. Each new pod waits
// its own random startup jitter before it joins (none counts as added by a
// scale-up), so the fleet comes back spread out, and each then eases onto the
// sink: in its warm-up window the service never sees more from one pod than
// the warm-up ramp allows.
func TestScenario4RolloutIsStaggeredAndWarmsUp(t *testing.T) {
	rep := newReport(t, "scenario 4 (rolling restart: startup jitter, warm-up rate)")
	ns := s.newNamespace(t, "rollout")
	s.b.createTopic(t, "events", 3)
	const (
		maxJitter  = 20 * time.Second
		warmup     = 30 * time.Second
		warmupFrom = 20.0
		steady     = 200.0
	)
	sp := s.sample(t, "http", ns)
	sp.Spec.Source.Topic = "events"
	sp.Spec.Sink.HTTP.URL = s.recv.url(ns, sp.Name)
	sp.Spec.Scaling.MinReplicas, sp.Spec.Scaling.MaxReplicas = ptrTo[int32](3), ptrTo[int32](3)
	sp.Spec.Startup.MaxJitter = duration(maxJitter)
	sp.Spec.RateLimit = sluicev1.RateLimitSpec{RecordsPerSecond: ptrTo[int32](int32(steady)),
		Warmup: sluicev1.WarmupSpec{RecordsPerSecond: ptrTo[int32](int32(warmupFrom)), Duration: duration(warmup)}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := s.k.collectLogs(ctx, ns, pipelineLabel+"="+sp.Name)
	if err := s.k.c.Create(ctx, sp); err != nil {
		t.Fatal(err)
	}
	s.waitReady(t, ns, sp.Name, 3*time.Minute)
	rep.mark("Ready with 3 workers")

	// A backlog that keeps every worker at its limit through the rollout.
	recs, good, _ := orders("events", "e", 0, 30_000, 0)
	s.b.produce(t, recs)
	time.Sleep(5 * time.Second)

	// The config change: a new worker config hash, so a rollout.
	cur := s.getPipeline(t, ns, sp.Name)
	patch := client.MergeFrom(cur.DeepCopy())
	cur.Spec.CircuitBreaker.FailureThreshold = ptrTo[int32](6)
	if err := s.k.c.Patch(ctx, cur, patch); err != nil {
		t.Fatal(err)
	}
	oldHash := cur.Status.WorkerConfigHash
	changed := time.Now()
	rep.mark("config changed")
	var newPods []corev1.Pod
	eventually(t, 4*time.Minute, "the rollout done: 3 new workers ready", func() (bool, string) {
		pods, err := s.workerPods(ctx, ns, sp.Name)
		if err != nil {
			return false, err.Error()
		}
		newPods = newPods[:0]
		ready := 0
		for _, p := range pods {
			if p.Annotations["streaming.sluice.dev/config-hash"] == oldHash || p.DeletionTimestamp != nil {
				continue
			}
			newPods = append(newPods, p)
			if podReady(&p) {
				ready++
			}
		}
		return ready == 3 && len(pods) == 3, fmt.Sprintf("%d pods, %d new ready", len(pods), ready)
	})
	rep.set("rollout took", "%.1fs", time.Since(changed).Seconds())

	s.checkAppliedOnce(t, rep, ns, sp.Name, good, 5*time.Minute)
	r := s.recv.report(ns, sp.Name)

	// Each new pod: its jitter (from its log), its container start, its first
	// delivery, and the most it delivered in any second of its warm-up.
	var joins []time.Time
	for _, p := range newPods {
		started := p.Status.ContainerStatuses[0].State.Running.StartedAt.Time
		delay, ok := jitterDelay(logs.grep(`"startup jitter"`), p.Name)
		if !ok {
			skipped := len(logs.grep("without startup jitter")) > 0
			t.Errorf("pod %s logged no startup jitter (a scale-up's skip: %v); a rollout must be staggered", p.Name, skipped)
			continue
		}
		if delay >= maxJitter {
			t.Errorf("pod %s: jitter %s, want below %s", p.Name, delay, maxJitter)
		}
		ts := r.byAddr[p.Status.PodIP]
		if len(ts) == 0 {
			t.Errorf("pod %s (%s) delivered nothing", p.Name, p.Status.PodIP)
			continue
		}
		// The limiter starts after the jitter, so no earlier than this (the
		// container start time has second precision: rounded down).
		consumeFrom := started.Add(delay)
		if ts[0].Before(consumeFrom) {
			t.Errorf("pod %s delivered at %s, before its jitter ended (%s + %s)", p.Name, ts[0].Format(time.StampMilli), started.Format(time.StampMilli), delay)
		}
		worst, at, limit := worstSecond(ts, consumeFrom, warmup, warmupFrom, steady)
		joins = append(joins, ts[0])
		rep.set("pod "+p.Name, "started %s, jitter %.1fs, first delivery +%.1fs, busiest warm-up second %d records at +%.0fs (allowed %d)",
			started.Format("15:04:05"), delay.Seconds(), ts[0].Sub(started).Seconds(), worst, at.Seconds(), limit)
		if worst > limit {
			t.Errorf("pod %s sent %d records in one second %.0fs into its warm-up, more than the ramp allows (%d)", p.Name, worst, at.Seconds(), limit)
		}
	}
	sort.Slice(joins, func(i, j int) bool { return joins[i].Before(joins[j]) })
	if len(joins) > 1 {
		gaps := make([]string, 0, len(joins)-1)
		for i := 1; i < len(joins); i++ {
			gaps = append(gaps, fmt.Sprintf("%.1fs", joins[i].Sub(joins[i-1]).Seconds()))
		}
		rep.set("first deliveries spread", "%.1fs (gaps %s)", joins[len(joins)-1].Sub(joins[0]).Seconds(), strings.Join(gaps, ", "))
	}
	s.checkNoRejectedStatusWrites(t)
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// jitterDelay reads the "startup jitter" line a pod's worker logged.
func jitterDelay(lines []logLine, pod string) (time.Duration, bool) {
	for _, l := range lines {
		if l.pod != pod {
			continue
		}
		var rec struct {
			Delay json.Number `json:"delay"`
		}
		if err := json.Unmarshal([]byte(l.text), &rec); err != nil {
			continue
		}
		// slog's JSON handler writes a time.Duration as nanoseconds.
		if ns, err := rec.Delay.Int64(); err == nil {
			return time.Duration(ns), true
		}
	}
	return 0, false
}

// warmupRate is the worker's warm-up ramp (worker/ratelimit.go): linear from
// `from` to `to` records/s over `duration`, then `to`.
func warmupRate(elapsed, duration time.Duration, from, to float64) float64 {
	if elapsed >= duration {
		return to
	}
	return from + (to-from)*float64(elapsed)/float64(duration)
}

// worstSecond checks every one-second window of the warm-up against what
// the token bucket allows in it at most: the rate at the window's end (the
// ramp only rises) plus its burst (a tenth of a second's worth), plus one for
// a delivery on the window's edge. It returns the window closest to (or
// furthest past) its allowance: its deliveries, when it ended, its allowance.
func worstSecond(ts []time.Time, from time.Time, duration time.Duration, rFrom, rTo float64) (worst int, at time.Duration, limit int) {
	j, margin := 0, math.MaxInt
	for i := range ts {
		if ts[i].Sub(from) >= duration {
			break
		}
		for ts[i].Sub(ts[j]) >= time.Second {
			j++
		}
		end := ts[i].Sub(from)
		rate := warmupRate(end, duration, rFrom, rTo)
		allowed := int(math.Ceil(rate)) + int(math.Ceil(rate/10)) + 1
		if n := i - j + 1; allowed-n < margin {
			margin, worst, at, limit = allowed-n, n, end, allowed
		}
	}
	return worst, at, limit
}
