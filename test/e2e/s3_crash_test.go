//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// Scenario 3: while records stream into the http and postgres samples (3
// workers each), worker pods are deleted, force-deleted, their worker
// processes SIGKILLed on the host, and the kubelet is restarted. Nothing is
// lost and nothing takes effect twice: the http service sees each order once
// per idempotency key, the table has one committed write per order.
func TestScenario3NothingLostWhenPodsDieMidStream(t *testing.T) {
	rep := newReport(t, "scenario 3 (pods deleted, force-deleted, SIGKILLed; kubelet restarted)")
	ns := s.newNamespace(t, "crash")
	s.b.createTopic(t, "payments", 4)
	conn := s.ordersDatabase(t, ns, ns)

	// The samples, on their own topic and group; three workers each; a 5 s
	// startup jitter and a 10 s warm-up instead of 30 s and 2 m, so that
	// restarted pods come back within the scenario.
	httpSP := s.sample(t, "http", ns)
	pgSP := s.sample(t, "postgres", ns)
	pgSP.Spec.Source.ConsumerGroup = ""
	for _, sp := range []*sluicev1.StreamPipeline{httpSP, pgSP} {
		sp.Spec.Source.Topic = "payments"
		sp.Spec.Scaling.MinReplicas, sp.Spec.Scaling.MaxReplicas = ptrTo[int32](3), ptrTo[int32](3)
		sp.Spec.Startup.MaxJitter = duration(5 * time.Second)
		sp.Spec.RateLimit.Warmup.Duration = duration(10 * time.Second)
	}
	httpSP.Spec.Sink.HTTP.URL = s.recv.url(ns, httpSP.Name)
	s.recv.setFailShare(ns, httpSP.Name, 0.01)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, sp := range []*sluicev1.StreamPipeline{httpSP, pgSP} {
		if err := s.k.c.Create(ctx, sp); err != nil {
			t.Fatal(err)
		}
	}
	s.waitReady(t, ns, httpSP.Name, 3*time.Minute)
	s.waitReady(t, ns, pgSP.Name, 3*time.Minute)
	rep.mark("both Ready")

	// 40,000 records over ~40 s, while the faults happen.
	recs, good, poison := orders("payments", "p", 0, 40_000, 500)
	var produced sync.WaitGroup
	produced.Add(1)
	go func() {
		defer produced.Done()
		for i := 0; i < len(recs); i += 500 {
			s.b.produce(t, recs[i:min(i+500, len(recs))])
			time.Sleep(500 * time.Millisecond)
		}
	}()

	faults := []struct {
		name string
		at   time.Duration
		do   func(*corev1.Pod) (string, error)
	}{
		{"deleted", 5 * time.Second, func(p *corev1.Pod) (string, error) {
			return "", s.k.cs.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{})
		}},
		{"force-deleted", 13 * time.Second, func(p *corev1.Pod) (string, error) {
			return "", s.k.cs.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		}},
		{"worker SIGKILLed", 21 * time.Second, func(p *corev1.Pod) (string, error) {
			pid, err := sigkillWorker(p)
			return fmt.Sprintf(" (pid %d)", pid), err
		}},
	}
	start := time.Now()
	for _, f := range faults {
		time.Sleep(time.Until(start.Add(f.at)))
		for _, sp := range []*sluicev1.StreamPipeline{httpSP, pgSP} {
			p := s.runningPod(t, ns, sp.Name)
			detail, err := f.do(p)
			if err != nil {
				t.Fatalf("%s %s: %v", f.name, p.Name, err)
			}
			rep.set(fmt.Sprintf("%s %s", f.name, sp.Name), "%s%s at %.1fs", p.Name, detail, time.Since(start).Seconds())
		}
	}
	time.Sleep(time.Until(start.Add(29 * time.Second)))
	if err := s.restartKubelet(); err != nil {
		t.Fatal(err)
	}
	rep.set("kubelet restarted", "at %.1fs", time.Since(start).Seconds())
	produced.Wait()
	rep.set("produced", "%d records (%d poison pills) in %.1fs", len(recs), len(poison), time.Since(start).Seconds())

	eventually(t, 5*time.Minute, "every good record's effect in both sinks", func() (bool, string) {
		c := checkEffects(s.recv.report(ns, httpSP.Name).effects, good)
		rows, err := countRows(ctx, conn)
		return c.lost == 0 && rows >= len(good), fmt.Sprintf("http: %d of %d; postgres: %d rows (%v)", c.applied, len(good), rows, err)
	})
	rep.set("all effects", "%.1fs after the first fault", time.Since(start).Seconds())
	for _, sp := range []*sluicev1.StreamPipeline{httpSP, pgSP} {
		s.waitReady(t, ns, sp.Name, 3*time.Minute)
		eventually(t, time.Minute, sp.Name+": DLQ holds every poison pill", func() (bool, string) {
			st := s.getPipeline(t, ns, sp.Name).Status
			ids, bad := checkDLQ(t, s.b.readAll(t, st.DeadLetter.Topic), "payments", poison)
			return len(uniq(ids)) == len(poison) && bad == 0, fmt.Sprintf("%d of %d", len(uniq(ids)), len(poison))
		})
		st := s.getPipeline(t, ns, sp.Name).Status
		ids, _ := checkDLQ(t, s.b.readAll(t, st.DeadLetter.Topic), "payments", poison)
		rep.set("DLQ "+sp.Name, "%d records for %d poison pills (a crash between parking and committing may park one twice)", len(ids), len(poison))
		pods, _ := s.workerPods(ctx, ns, sp.Name)
		restarts := int32(0)
		for _, p := range pods {
			for _, c := range p.Status.ContainerStatuses {
				restarts += c.RestartCount
			}
		}
		rep.set("container restarts "+sp.Name, "%d in the %d pods now", restarts, len(pods))
	}

	hr := s.recv.report(ns, httpSP.Name)
	hc := checkEffects(hr.effects, good)
	rep.set("http deliveries", "%d (2xx) for %d keys: %d redeliveries; %d 503s", hr.deliveries, hr.keys, hr.deliveries-hr.keys, hr.failures)
	rep.set("http effects", "%d applied, %d duplicate, %d lost, %d unexpected", hc.applied, hc.duplicates, hc.lost, hc.unexpected)
	if hc.duplicates > 0 || hc.lost > 0 || hc.unexpected > 0 {
		t.Errorf("http sink: %+v", hc)
	}
	pw := readOrders(t, conn)
	pgDup, pgLost := 0, 0
	for _, id := range good {
		switch w := pw.writes[id]; {
		case !pw.rows[id] || w == 0:
			pgLost++
		case w > 1:
			pgDup += w - 1
		}
	}
	rep.set("postgres effects", "%d rows, %d committed writes: %d duplicate, %d lost", len(pw.rows), sum(pw.writes), pgDup, pgLost)
	if pgDup > 0 || pgLost > 0 || len(pw.rows) != len(good) {
		t.Errorf("postgres sink: %d rows for %d good records, %d duplicate writes, %d lost", len(pw.rows), len(good), pgDup, pgLost)
	}
	s.checkNoRejectedStatusWrites(t)
}

// runningPod picks a running, not deleting, worker pod of a pipeline.
func (s *suite) runningPod(t *testing.T, ns, pipeline string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	eventually(t, time.Minute, "a running worker of "+pipeline, func() (bool, string) {
		pods, err := s.workerPods(context.Background(), ns, pipeline)
		if err != nil {
			return false, err.Error()
		}
		for i := range pods {
			p := &pods[i]
			if p.DeletionTimestamp == nil && len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].State.Running != nil {
				pod = p
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d pods, none running", len(pods))
	})
	return pod
}
