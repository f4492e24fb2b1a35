//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/worker/failure"
)

// Scenario 10 (in an s6 file: before scenario 5c in s7, which must run
// last): a redrive of 100,000 dead letters while the operator that copies them
// is killed twice (its pod deleted with no grace period: no lease release, no
// cleanup) and new dead letters keep arriving. The next operator pod resumes
// from the position committed with the copies: the replay completes with
// exactly the snapshot's 100,000, and the target holds each of them once for a
// read_committed reader, nothing else of this replay.
func TestScenario10RedriveSurvivesOperatorKills(t *testing.T) {
	rep := newReport(t, "scenario 10 (a 100,000-record redrive while the operator is killed twice)")
	ns := s.newNamespace(t, "redrive-crash")
	s.b.createTopic(t, "refunds", 4)
	sp := s.sample(t, "http", ns)
	sp.Spec.Source.Topic = "refunds"
	sp.Spec.Sink.HTTP.URL = s.recv.url(ns, sp.Name)
	sp.Spec.Suspend = true // the copies stay in the retry topic, where the test counts them
	ctx := context.Background()
	if err := s.k.c.Create(ctx, sp); err != nil {
		t.Fatal(err)
	}
	dlq := sp.DeadLetterTopic()
	eventually(t, 2*time.Minute, "the pipeline's topics provisioned", func() (bool, string) {
		c := condition(s.getPipeline(t, ns, sp.Name), sluicev1.ConditionTopicsReady)
		return c != nil && c.Status == metav1.ConditionTrue, fmt.Sprintf("%+v", c)
	})

	const n = 100_000
	deadLetters := func(from, to int) []*kgo.Record {
		recs := make([]*kgo.Record, 0, to-from)
		for i := from; i < to; i++ {
			id := fmt.Sprintf("r-%07d", i)
			recs = append(recs, &kgo.Record{Topic: dlq, Key: []byte(id), Value: []byte(`{"id":"` + id + `"}`), Headers: []kgo.RecordHeader{
				{Key: failure.HeaderOriginalTopic, Value: []byte("refunds")},
				{Key: failure.HeaderOriginalPartition, Value: []byte(strconv.Itoa(i % 4))},
				{Key: failure.HeaderOriginalOffset, Value: []byte(strconv.Itoa(i / 4))},
				{Key: failure.HeaderErrorClass, Value: []byte("transient")},
				{Key: failure.HeaderErrorMessage, Value: []byte("upstream timed out")},
			}})
		}
		return recs
	}
	s.b.produce(t, deadLetters(0, n))
	rep.mark("100,000 dead letters")

	sr := &sluicev1.StreamReplay{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "redrive-through-kills"},
		Spec: sluicev1.StreamReplaySpec{Pipeline: sp.Name, RateLimit: ptr.To[int32](4000)}}
	if err := s.k.c.Create(ctx, sr); err != nil {
		t.Fatal(err)
	}
	got := &sluicev1.StreamReplay{}
	read := func() {
		if err := s.k.c.Get(ctx, client.ObjectKeyFromObject(sr), got); err != nil {
			t.Fatal(err)
		}
	}
	late := 0
	for i, at := range []int64{15_000, 55_000} {
		eventually(t, 3*time.Minute, fmt.Sprintf("the redrive past %d copies", at), func() (bool, string) {
			read()
			return got.Status.Done >= at || got.Status.Phase == sluicev1.ReplayPhaseComplete, fmt.Sprintf("%s, %d done", got.Status.Phase, got.Status.Done)
		})
		if got.Status.Phase == sluicev1.ReplayPhaseComplete {
			t.Fatalf("the redrive completed before kill %d: the kills would not land mid-copy (rateLimit too high?)", i+1)
		}
		leader := s.leader(t)
		if err := s.k.cs.CoreV1().Pods(operatorNamespace).Delete(ctx, leader, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
			t.Fatal(err)
		}
		rep.set(fmt.Sprintf("kill %d", i+1), "%s at %d copies", leader, got.Status.Done)
		// New dead letters after the snapshot: not part of this replay.
		s.b.produce(t, deadLetters(n+late, n+late+2500))
		late += 2500
		eventually(t, 2*time.Minute, "another operator pod leads", func() (bool, string) {
			l := s.leaderOrEmpty(ctx)
			return l != "" && l != leader, "lease held by " + l
		})
	}
	eventually(t, 5*time.Minute, "the redrive Complete", func() (bool, string) {
		read()
		return got.Status.Phase == sluicev1.ReplayPhaseComplete, fmt.Sprintf("%s, %d done: %s", got.Status.Phase, got.Status.Done, got.Status.Message)
	})
	rep.set("redrive", "%s", got.Status.Message)
	if got.Status.Done != n {
		t.Errorf("done %d, want the snapshot's %d (the %d later dead letters are not part of it)", got.Status.Done, n, late)
	}

	perKey := map[string]int{}
	others := 0
	for _, r := range s.b.readCommitted(t, got.Status.Target) {
		if by, _ := header(r, failure.HeaderRedrivenBy); by != ns+"/"+sr.Name {
			others++
			continue
		}
		perKey[string(r.Key)]++
	}
	missing, twice := 0, 0
	for i := range n {
		switch perKey[fmt.Sprintf("r-%07d", i)] {
		case 0:
			missing++
		case 1:
		default:
			twice++
		}
	}
	extra := len(perKey) - (n - missing) // keys of the later dead letters
	rep.set("target", "%d missing, %d more than once, %d later dead letters copied; %d records of others", missing, twice, extra, others)
	if missing > 0 || twice > 0 || extra > 0 {
		t.Errorf("the target: %d of the %d selected dead letters missing, %d copied more than once, %d later ones copied", missing, n, twice, extra)
	}
	s.checkNoRejectedStatusWrites(t)
}
