//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// Scenario 2: the autoscaled sample (startFrom Latest, minReplicas 0) on a
// topic that already holds records when the pipeline is created, with a 20 s
// scale-down window instead of 5 m so the test sees it. The pipeline skips
// what was there before it (Latest), scales to zero with no lag, wakes for a
// backlog and scales up to the partition count and no further, back to zero
// after the window, and wakes again for a few records. Every record produced
// after its creation takes effect exactly once.
//
// Pins issue 10's defect 2: a never-committed Latest group scaled to zero
// used to report LAG 0 while records piled up, never woke, and its first
// worker skipped them.
func TestScenario2ScalesWithTheBacklogAndWakesFromZero(t *testing.T) {
	rep := newReport(t, "scenario 2 (scaling, scale to zero and back)")
	ns := s.newNamespace(t, "scaling")
	const partitions = 3
	s.b.createTopic(t, "clicks", partitions)
	before, _, _ := orders("clicks", "before", 0, 2000, 0)
	s.b.produce(t, before)

	sp := s.sample(t, "autoscaled", ns)
	sp.Spec.Sink.HTTP.URL = s.recv.url(ns, sp.Name)
	sp.Spec.Scaling.ScaleDownStabilization = duration(20 * time.Second)
	sp.Spec.Scaling.LagThreshold = ptrTo[int64](500)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.k.c.Create(ctx, sp); err != nil {
		t.Fatal(err)
	}
	scale := s.watchReplicas(ctx, ns, sp.Name)
	created := time.Now()

	eventually(t, 2*time.Minute, "starting offsets committed, then scaled to zero", func() (bool, string) {
		got := s.getPipeline(t, ns, sp.Name)
		d, err := s.deployment(ctx, ns, sp.Name)
		if err != nil || d == nil || d.Spec.Replicas == nil {
			return false, fmt.Sprint("no Deployment yet ", err)
		}
		return got.Status.StartingOffsetsCommitted != nil && *d.Spec.Replicas == 0 && d.Status.Replicas == 0,
			fmt.Sprintf("startingOffsetsCommitted %v, replicas %d/%d", got.Status.StartingOffsetsCommitted, *d.Spec.Replicas, d.Status.Replicas)
	})
	rep.set("scaled to zero after", "%.1fs", time.Since(created).Seconds())
	if row := s.getSP(t, ns, sp.Name); row["LAG"] != "0" || row["REPLICAS"] != "0" {
		t.Errorf("at zero with nothing new: kubectl get sp shows %v, want LAG 0, REPLICAS 0", row)
	}

	// A backlog: the pipeline wakes and scales up to the partition count.
	wave1, good1, _ := orders("clicks", "wave1", 0, 6000, 0)
	t1 := time.Now()
	s.b.produce(t, wave1)
	eventually(t, 4*time.Minute, "the backlog consumed", func() (bool, string) {
		c := checkEffects(s.recv.report(ns, sp.Name).effects, good1)
		return c.lost == 0, fmt.Sprintf("%d of %d, replicas %s", c.applied, len(good1), scale)
	})
	rep.set("backlog of 6000 consumed in", "%.1fs", time.Since(t1).Seconds())
	if m := scale.maxReplicas(); m != partitions {
		t.Errorf("the backlog (lag 6000, threshold 500: 12 replicas wanted) scaled to at most %d replicas, want the partition count %d (%s)", m, partitions, scale)
	}

	// Back to zero once the window has passed without lag.
	t2 := time.Now()
	eventually(t, 3*time.Minute, "scaled back to zero", func() (bool, string) {
		d, err := s.deployment(ctx, ns, sp.Name)
		if err != nil || d == nil {
			return false, fmt.Sprint(err)
		}
		return *d.Spec.Replicas == 0 && d.Status.Replicas == 0, fmt.Sprintf("replicas %d/%d", *d.Spec.Replicas, d.Status.Replicas)
	})
	rep.set("back to zero after the drain", "%.1fs (window 20s)", time.Since(t2).Seconds())

	// A few records wake it again.
	wave2, good2, _ := orders("clicks", "wave2", 0, 300, 0)
	t3 := time.Now()
	s.b.produce(t, wave2)
	eventually(t, 3*time.Minute, "woken for 300 records", func() (bool, string) {
		c := checkEffects(s.recv.report(ns, sp.Name).effects, good2)
		return c.lost == 0, fmt.Sprintf("%d of %d, replicas %s", c.applied, len(good2), scale)
	})
	rep.set("woke and consumed 300 in", "%.1fs", time.Since(t3).Seconds())

	r := s.recv.report(ns, sp.Name)
	all := append(append([]string(nil), good1...), good2...)
	c := checkEffects(r.effects, all)
	rep.set("records", "%d before the pipeline, %d after", len(before), len(all))
	rep.set("deliveries", "%d for %d keys: %d redeliveries", r.deliveries, r.keys, r.deliveries-r.keys)
	rep.set("effects", "%d applied, %d duplicate, %d lost, %d unexpected (records from before it)", c.applied, c.duplicates, c.lost, c.unexpected)
	rep.set("scale events", "%s", scale)
	if c.duplicates > 0 || c.lost > 0 {
		t.Errorf("effects: %+v", c)
	}
	if c.unexpected > 0 {
		t.Errorf("%d records produced before the Latest pipeline existed were delivered", c.unexpected)
	}
	got := s.getPipeline(t, ns, sp.Name)
	if ls := got.Status.LastScale; ls != nil {
		rep.set("last scale", "%d → %d %s: %s", ls.From, ls.To, ls.Reason, ls.Message)
	}
	s.checkNoRejectedStatusWrites(t)
}
