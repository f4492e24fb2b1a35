//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/render"
)

// Scenario 8 (in an s6 file: before scenario 5c in s7, which must run last):
// the static-membership sample on the real kubelet. The workers
// run as a StatefulSet whose pod names are the group's instance IDs; a config
// change rolls the slots in place (same names, new template) while records
// flow, and nothing is lost or applied twice; a scale-down removes the
// dropped slot's member from the group at once instead of after its session
// timeout.
//
// It does not measure partition moves: the suite's broker is kfake, which
// rebalances on a static member's rejoin where Kafka does not (docs/groups.md;
// worker's TestStaticMembersRestartWithoutMovingPartitions checks that on
// Apache Kafka).
func TestScenario8StaticMembersRollInPlace(t *testing.T) {
	rep := newReport(t, "scenario 8 (static membership: StatefulSet slots, rollout in place, scale-down)")
	ns := s.newNamespace(t, "static")
	s.b.createTopic(t, "inventory", 6)
	sp := s.sample(t, "static", ns)
	sp.Spec.Sink.HTTP.URL = s.recv.url(ns, sp.Name)
	sp.Spec.Scaling.MinReplicas, sp.Spec.Scaling.MaxReplicas = ptrTo[int32](3), ptrTo[int32](3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.k.c.Create(ctx, sp); err != nil {
		t.Fatal(err)
	}
	s.waitReady(t, ns, sp.Name, 3*time.Minute)
	rep.mark("Ready with 3 static workers")

	worker := render.WorkerName(sp)
	slots := []string{worker + "-0", worker + "-1", worker + "-2"}
	s.checkSlots(t, ctx, ns, sp.Name, slots)
	eventually(t, time.Minute, "the group's static members are the pod names", func() (bool, string) {
		have := s.staticMembers(t, sp.ConsumerGroup())
		return slices.Equal(have, slots), fmt.Sprint(have)
	})

	recs, good, _ := orders("inventory", "i", 0, 6000, 0)
	s.b.produce(t, recs[:3000])
	cur := s.getPipeline(t, ns, sp.Name)
	oldHash := cur.Status.WorkerConfigHash
	patch := client.MergeFrom(cur.DeepCopy())
	cur.Spec.CircuitBreaker.FailureThreshold = ptrTo[int32](6)
	if err := s.k.c.Patch(ctx, cur, patch); err != nil {
		t.Fatal(err)
	}
	changed := time.Now()
	s.b.produce(t, recs[3000:])
	eventually(t, 5*time.Minute, "the rollout done: every slot runs the new config", func() (bool, string) {
		pods, err := s.workerPods(ctx, ns, sp.Name)
		if err != nil {
			return false, err.Error()
		}
		var fresh []string
		for _, p := range pods {
			if p.Annotations[sluicev1.AnnotationConfigHash] != oldHash && p.DeletionTimestamp == nil && podReady(&p) {
				fresh = append(fresh, p.Name)
			}
		}
		slices.Sort(fresh)
		return slices.Equal(fresh, slots), fmt.Sprintf("%d pods, new and ready: %v", len(pods), fresh)
	})
	rep.set("rollout took", "%.1fs", time.Since(changed).Seconds())
	s.checkSlots(t, ctx, ns, sp.Name, slots)
	s.waitReady(t, ns, sp.Name, 2*time.Minute)

	s.checkAppliedOnce(t, rep, ns, sp.Name, good, 5*time.Minute)

	// Scale-down to 2: slot 2's pod goes; its member would hold its
	// partitions for the 45 s session timeout; the operator removes it.
	cur = s.getPipeline(t, ns, sp.Name)
	patch = client.MergeFrom(cur.DeepCopy())
	cur.Spec.Scaling.MinReplicas, cur.Spec.Scaling.MaxReplicas = ptrTo[int32](2), ptrTo[int32](2)
	if err := s.k.c.Patch(ctx, cur, patch); err != nil {
		t.Fatal(err)
	}
	scaled := time.Now()
	eventually(t, 2*time.Minute, "slot 2's pod gone", func() (bool, string) {
		_, err := s.k.cs.CoreV1().Pods(ns).Get(ctx, slots[2], metav1.GetOptions{})
		return err != nil && strings.Contains(err.Error(), "not found"), fmt.Sprint(err)
	})
	podGone := time.Since(scaled)
	eventually(t, 30*time.Second, "slot 2's member removed from the group", func() (bool, string) {
		have := s.staticMembers(t, sp.ConsumerGroup())
		return slices.Equal(have, slots[:2]), fmt.Sprint(have)
	})
	// The operator removed it (a worker that left on its own would pass the
	// check above without the operator).
	eventually(t, 30*time.Second, "the operator logged the removal of slot 2's member", func() (bool, string) {
		for _, l := range s.managers.grep("removed static members") {
			if strings.Contains(l.text, slots[2]) {
				return true, ""
			}
		}
		return false, "no such line"
	})
	rep.set("scale-down", "pod gone after %.1fs, member removed %.1fs after the scale-down (session timeout 45s)",
		podGone.Seconds(), time.Since(scaled).Seconds())
	if time.Since(scaled)-podGone > 25*time.Second {
		t.Errorf("the member of slot 2 stayed %s after its pod was gone", time.Since(scaled)-podGone)
	}
	s.checkNoRejectedStatusWrites(t)
}

// checkSlots fails unless the pipeline's worker pods are exactly the named
// slots and belong to a StatefulSet.
func (s *suite) checkSlots(t testing.TB, ctx context.Context, ns, pipeline string, slots []string) {
	t.Helper()
	eventually(t, 2*time.Minute, "the worker pods are the StatefulSet's slots", func() (bool, string) {
		pods, err := s.workerPods(ctx, ns, pipeline)
		if err != nil {
			return false, err.Error()
		}
		var names []string
		for _, p := range pods {
			if owner := metav1.GetControllerOf(&p); owner == nil || owner.Kind != "StatefulSet" {
				return false, fmt.Sprintf("pod %s is not a StatefulSet's (%v)", p.Name, owner)
			}
			if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
				names = append(names, p.Name)
			}
		}
		slices.Sort(names)
		return slices.Equal(names, slots), fmt.Sprint(names)
	})
}

// staticMembers lists the group.instance.ids in group, sorted.
func (s *suite) staticMembers(t testing.TB, group string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	described, err := s.b.adm.DescribeGroups(ctx, group)
	if err != nil {
		t.Logf("describe group %s: %v", group, err)
		return nil
	}
	var ids []string
	for _, m := range described[group].Members {
		if m.InstanceID != nil {
			ids = append(ids, *m.InstanceID)
		}
	}
	slices.Sort(ids)
	return ids
}
