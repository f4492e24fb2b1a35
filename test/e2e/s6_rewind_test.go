//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// Scenario 9 (in an s6 file: before scenario 5c in s7, which must run last):
// a rewind on the real kubelet. The http sample has delivered 2,000 records,
// half of them from two hours ago, half from a minute ago; the rewind
// sample's manifest, pointed at the time between, stops the workers (their
// pods go away), moves the group back, and the workers come back and deliver
// exactly the second half again: every one of those keys once more, none of
// the first half, and no second effect at the idempotent receiver.
func TestScenario9RewindReadsAgainFromAPoint(t *testing.T) {
	rep := newReport(t, "scenario 9 (rewind: the workers stop, the group goes back, the records after the point come again)")
	ns := s.newNamespace(t, "rewind")
	s.b.createTopic(t, "ledger", 4)
	sp := s.sample(t, "http", ns)
	sp.Spec.Source.Topic = "ledger"
	sp.Spec.Sink.HTTP.URL = s.recv.url(ns, sp.Name)
	sp.Spec.RateLimit = sluicev1.RateLimitSpec{}
	sp.Spec.Scaling.MinReplicas, sp.Spec.Scaling.MaxReplicas = ptrTo[int32](2), ptrTo[int32](2)
	ctx := context.Background()
	if err := s.k.c.Create(ctx, sp); err != nil {
		t.Fatal(err)
	}
	s.waitReady(t, ns, sp.Name, 3*time.Minute)

	now := time.Now()
	point := now.Add(-time.Hour)
	recs, good, _ := orders("ledger", "l", 0, 2000, 0)
	for i, r := range recs {
		r.Timestamp = now.Add(-2 * time.Hour)
		if i >= 1000 {
			r.Timestamp = now.Add(-time.Minute)
		}
	}
	s.b.produce(t, recs)
	eventually(t, 3*time.Minute, "every record delivered", func() (bool, string) {
		c := checkEffects(s.recv.report(ns, sp.Name).effects, good)
		return c.lost == 0, fmt.Sprintf("%d of %d", c.applied, len(good))
	})
	eventually(t, 2*time.Minute, "lag 0", func() (bool, string) {
		lag := s.getPipeline(t, ns, sp.Name).Status.Lag
		return lag != nil && lag.Total == 0, fmt.Sprintf("%+v", lag)
	})
	before := s.recv.report(ns, sp.Name).deliveriesByKey

	sr := s.replaySample(t, "rewind", ns)
	sr.Spec.Pipeline = sp.Name
	since := metav1.NewTime(point)
	sr.Spec.Select.Since = &since
	if err := s.k.c.Create(ctx, sr); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	sawHold := false
	got := &sluicev1.StreamReplay{}
	eventually(t, 3*time.Minute, "the rewind Complete", func() (bool, string) {
		if err := s.k.c.Get(ctx, client.ObjectKeyFromObject(sr), got); err != nil {
			return false, err.Error()
		}
		if c := condition(s.getPipeline(t, ns, sp.Name), sluicev1.ConditionReady); c != nil && c.Reason == sluicev1.ReasonRewinding {
			sawHold = true
		}
		return got.Status.Phase == sluicev1.ReplayPhaseComplete || got.Status.Phase == sluicev1.ReplayPhaseFailed,
			fmt.Sprintf("%s: %s", got.Status.Phase, got.Status.Message)
	})
	rep.set("rewind", "Complete after %.1fs: %s", time.Since(started).Seconds(), got.Status.Message)
	if got.Status.Phase != sluicev1.ReplayPhaseComplete || got.Status.Done != 1000 {
		t.Fatalf("the rewind: %s, done %d, want Complete with the 1000 records after the point", got.Status.Phase, got.Status.Done)
	}
	if !sawHold {
		t.Error("the pipeline never said Rewinding while the rewind ran")
	}
	// The position was read once the workers had stopped: all 2,000 committed.
	var committed int64
	for _, p := range got.Status.Snapshot {
		if p.Committed != nil {
			committed += *p.Committed
		}
	}
	if committed != 2000 {
		t.Errorf("the group's position before the rewind sums to %d, want 2000 (snapshot %+v)", committed, got.Status.Snapshot)
	}
	notes := s.eventNotes(t, ns, sp.Name)
	if !containsAll(notes, "workers held at 0 (from 2) while StreamReplay "+sr.Name, "rewind over: pipeline resumed with 2 workers") {
		t.Errorf("the pipeline's events don't tell the hold and the resume: %q", notes)
	}
	s.waitReady(t, ns, sp.Name, 3*time.Minute)
	eventually(t, 3*time.Minute, "the 1000 records after the point delivered again", func() (bool, string) {
		after := s.recv.report(ns, sp.Name).deliveriesByKey
		again := 0
		for _, id := range good[1000:] {
			if after[id] > before[id] {
				again++
			}
		}
		return again == 1000, fmt.Sprintf("%d of 1000", again)
	})
	r := s.recv.report(ns, sp.Name)
	for _, id := range good[:1000] {
		if r.deliveriesByKey[id] != before[id] {
			t.Errorf("%s (before the point) was delivered again: %d → %d", id, before[id], r.deliveriesByKey[id])
			break
		}
	}
	c := checkEffects(r.effects, good)
	rep.set("effects", "%d applied, %d duplicate, %d lost; %d deliveries for %d keys", c.applied, c.duplicates, c.lost, r.deliveries, r.keys)
	if c.duplicates > 0 || c.lost > 0 {
		t.Errorf("effects: %+v", c)
	}
	s.checkNoRejectedStatusWrites(t)
}

// replaySample reads config/samples/streaming_v1alpha1_streamreplay_<name>.yaml
// into namespace ns.
func (s *suite) replaySample(t testing.TB, name, ns string) *sluicev1.StreamReplay {
	t.Helper()
	sr := &sluicev1.StreamReplay{}
	s.readSample(t, "streaming_v1alpha1_streamreplay_"+name+".yaml", sr)
	sr.Namespace = ns
	return sr
}

// eventNotes are the notes of the events about pipeline name in ns.
func (s *suite) eventNotes(t testing.TB, ns, name string) []string {
	t.Helper()
	list := &eventsv1.EventList{}
	if err := s.k.c.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var notes []string
	for _, e := range list.Items {
		if e.Regarding.Kind == "StreamPipeline" && e.Regarding.Name == name {
			notes = append(notes, e.Note)
		}
	}
	return notes
}

// containsAll: every one of subs is in one of lines.
func containsAll(lines []string, subs ...string) bool {
	for _, sub := range subs {
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, sub) }) {
			return false
		}
	}
	return true
}
