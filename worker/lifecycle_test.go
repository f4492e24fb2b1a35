package worker

import (
	"net/http"
	"testing"
	"time"
)

func TestGracefulShutdownCommitsAndARestartedWorkerReprocessesNothing(t *testing.T) {
	b := newBroker(t)
	b.createTopics(1, allTopics...)
	svc := newService(t, func(call) int {
		time.Sleep(2 * time.Millisecond) // records are in flight when SIGTERM comes
		return http.StatusOK
	})
	cfg := b.httpConfig(svc.srv.URL)
	b.produce("orders", 0, 300, nil)

	first := startWorker(t, cfg, nil)
	eventually(t, 15*time.Second, "some records delivered", func() bool { return len(svc.accepted()) >= 60 })
	first.stop(t) // SIGTERM: finish in flight, commit, leave
	delivered := len(svc.accepted())
	if c := sumCommitted(b.committed("test.orders"), "orders"); c != int64(delivered) {
		t.Fatalf("after shutdown committed %d, delivered %d: a graceful shutdown commits exactly what it finished", c, delivered)
	}

	startWorker(t, cfg, nil)
	b.produce("orders", 300, 320, nil)
	eventually(t, 20*time.Second, "the rest delivered", func() bool { return len(svc.accepted()) >= 320 })
	time.Sleep(200 * time.Millisecond) // would-be duplicates have time to show up
	for body, n := range svc.acceptedBodies() {
		if n != 1 {
			t.Errorf("%s delivered %d times", body, n)
		}
	}
	if n := len(svc.accepted()); n != 320 {
		t.Errorf("delivered %d records, want 320", n)
	}
}

func TestRevokedPartitionsCommitTheirFinishedWork(t *testing.T) {
	b := newBroker(t)
	b.createTopics(4, allTopics...)
	svc := newService(t, func(call) int {
		time.Sleep(time.Millisecond)
		return http.StatusOK
	})
	cfg := b.httpConfig(svc.srv.URL)
	cfg.Consumer.MaxPollRecords = 20
	b.produce("orders", 0, 800, nil)

	startWorker(t, cfg, nil)
	eventually(t, 15*time.Second, "the first member is working", func() bool { return len(svc.accepted()) >= 50 })
	second := startWorker(t, cfg, nil) // joins: partitions move from the first member
	eventually(t, 20*time.Second, "the second member got partitions", func() bool {
		return counterValue(t, second.w, metricRecords, "outcome", "processed") > 0
	})
	eventually(t, 30*time.Second, "everything delivered", func() bool { return len(svc.acceptedBodies()) == 800 })
	time.Sleep(200 * time.Millisecond)
	dups := 0
	for _, n := range svc.acceptedBodies() {
		if n > 1 {
			dups++
		}
	}
	if dups > 0 {
		t.Errorf("%d records delivered twice across the rebalance: revoked partitions must commit what they finished", dups)
	}
	eventually(t, 10*time.Second, "all committed", func() bool { return sumCommitted(b.committed("test.orders"), "orders") == 800 })
	t.Logf("first member processed %v, second %v", 800-counterValue(t, second.w, metricRecords, "outcome", "processed"),
		counterValue(t, second.w, metricRecords, "outcome", "processed"))
}
