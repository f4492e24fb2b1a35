//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/worker/failure"
)

// Scenario 12 (in an s6 file: before scenario 5c in s7, which must run last):
// a StreamReplay of mode Reprocess on the real kubelet. The http pipeline is
// suspended (no worker runs); its DLQ holds 3,000 poison dead letters and
// 500 transient ones. The replay's Job — a pod of the worker image with the
// pipeline's config and service account — writes the poison ones straight to
// the service, at 500/s; its pod is deleted with no grace period halfway and
// the Job's next pod resumes from the committed position. The replay
// completes with done 3,000 from the pod's termination message; the service
// applied each poison order once and none of the transient ones.
func TestScenario12ReprocessJobWritesTheDeadLettersOnce(t *testing.T) {
	rep := newReport(t, "scenario 12 (Reprocess: a Job of the worker image writes 3,000 dead letters, its pod killed halfway)")
	ns := s.newNamespace(t, "reprocess")
	s.b.createTopic(t, "returns", 4)
	sp := s.sample(t, "http", ns)
	sp.Spec.Source.Topic = "returns"
	sp.Spec.Sink.HTTP.URL = s.recv.url(ns, sp.Name)
	sp.Spec.Suspend = true // only the Job writes to the service
	ctx := context.Background()
	if err := s.k.c.Create(ctx, sp); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Minute, "the pipeline's topics provisioned", func() (bool, string) {
		c := condition(s.getPipeline(t, ns, sp.Name), sluicev1.ConditionTopicsReady)
		return c != nil && c.Status == metav1.ConditionTrue, fmt.Sprintf("%+v", c)
	})

	const poison, transient = 3000, 500
	var recs []*kgo.Record
	for i := range poison + transient {
		id := fmt.Sprintf("ret-%06d", i)
		class := "poison"
		if i >= poison {
			class = "transient"
		}
		recs = append(recs, &kgo.Record{Topic: sp.DeadLetterTopic(), Key: []byte(id), Value: []byte(`{"id":"` + id + `"}`), Headers: []kgo.RecordHeader{
			{Key: "event-id", Value: []byte(id)},
			{Key: failure.HeaderOriginalTopic, Value: []byte("returns")},
			{Key: failure.HeaderOriginalPartition, Value: []byte(strconv.Itoa(i % 4))},
			{Key: failure.HeaderOriginalOffset, Value: []byte(strconv.Itoa(i / 4))},
			{Key: failure.HeaderErrorClass, Value: []byte(class)},
			{Key: failure.HeaderErrorMessage, Value: []byte("refund amount out of range")},
		}})
	}
	s.b.produce(t, recs)

	sr := &sluicev1.StreamReplay{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reprocess-refunds"},
		Spec: sluicev1.StreamReplaySpec{Pipeline: sp.Name, Mode: sluicev1.ReplayModeReprocess, RateLimit: ptr.To[int32](500),
			Select: sluicev1.ReplaySelection{ErrorClasses: []sluicev1.ReplayErrorClass{"poison"}}}}
	if err := s.k.c.Create(ctx, sr); err != nil {
		t.Fatal(err)
	}
	created := time.Now()
	got := &sluicev1.StreamReplay{}
	read := func() {
		if err := s.k.c.Get(ctx, client.ObjectKeyFromObject(sr), got); err != nil {
			t.Fatal(err)
		}
	}
	applied := func() int { return len(s.recv.report(ns, sp.Name).effects) }
	eventually(t, 3*time.Minute, "the Job's pod past 1,000 records", func() (bool, string) {
		return applied() >= 1000, fmt.Sprintf("%d applied", applied())
	})
	rep.set("first pod", "1,000 applied %.1fs after the replay was created", time.Since(created).Seconds())
	read()
	if got.Status.Job == "" || got.Status.Phase != sluicev1.ReplayPhaseRunning {
		t.Fatalf("replay %s, job %q: want Running with its Job", got.Status.Phase, got.Status.Job)
	}
	pods, err := s.k.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + got.Status.Job})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("the Job's pods: %d (%v), want 1", len(pods.Items), err)
	}
	victim := pods.Items[0].Name
	if err := s.k.cs.CoreV1().Pods(ns).Delete(ctx, victim, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	rep.set("kill", "pod %s deleted with no grace period at %d applied", victim, applied())

	eventually(t, 5*time.Minute, "the reprocess Complete", func() (bool, string) {
		read()
		return got.Status.Phase == sluicev1.ReplayPhaseComplete, fmt.Sprintf("%s, %d done: %s", got.Status.Phase, got.Status.Done, got.Status.Message)
	})
	rep.set("replay", "%s (%.1fs)", got.Status.Message, time.Since(created).Seconds())
	if got.Status.Done != poison || ptr.Deref(got.Status.FailedAgain, -1) != 0 {
		t.Errorf("done %d, failedAgain %v: want %d and 0", got.Status.Done, got.Status.FailedAgain, poison)
	}
	job := &batchv1.Job{}
	if err := s.k.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: got.Status.Job}, job); err != nil {
		t.Fatal(err)
	}
	rep.set("job", "%d succeeded, %d failed pods", job.Status.Succeeded, job.Status.Failed)

	r := s.recv.report(ns, sp.Name)
	missing, twice, others := 0, 0, 0
	for i := range poison + transient {
		n := r.effects[fmt.Sprintf("ret-%06d", i)]
		switch {
		case i >= poison && n > 0:
			others++
		case i < poison && n == 0:
			missing++
		case n > 1:
			twice++
		}
	}
	rep.set("service", "%d applied, %d missing, %d applied twice, %d transient ones applied; %d deliveries (redeliveries of the killed pod's batch)", len(r.effects), missing, twice, others, r.deliveries)
	if missing > 0 || twice > 0 || others > 0 {
		t.Errorf("the service: %d of %d missing, %d applied twice, %d not selected but applied", missing, poison, twice, others)
	}
	s.checkNoRejectedStatusWrites(t)
}
