package worker

import (
	"context"
	"maps"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/internal/kafka"
	"github.com/sluice-dev/sluice/internal/testkafka"
	"github.com/sluice-dev/sluice/internal/workerconfig"
)

// shareLimits are a share group's failure budget in a test.
type shareLimits struct {
	retries, deliveryLimit int32
	lock                   time.Duration
}

var defaultShareLimits = shareLimits{retries: 2, deliveryLimit: 6, lock: 15 * time.Second}

// newShareBroker is a broker for share group tests: kfake, or the real
// cluster (hack/kafka.sh starts it with the same short share heartbeat and
// session, and a 1 s minimum lock). kfake reads the delivery count limit and
// the lock duration from its broker configs, Kafka from the group's configs,
// which shareConfig sets as the operator does; so they are set on both.
func newShareBroker(t *testing.T, l shareLimits) *broker {
	t.Helper()
	return brokerOn(t, testkafka.New(t, kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(100*time.Millisecond), kfake.BrokerConfigs(map[string]string{
		"group.share.heartbeat.interval.ms":   "200",
		"group.share.delivery.count.limit":    strconv.Itoa(int(l.deliveryLimit)),
		"group.share.record.lock.duration.ms": strconv.FormatInt(l.lock.Milliseconds(), 10),
		"share.record.lock.sweep.interval.ms": "100",
		// A killed member keeps its partitions until its session expires
		// (Kafka's minimum is 45 s).
		"group.share.session.timeout.ms": "2000",
	})))
}

// shareConfig turns cfg into a share group member's (what render writes for a
// groupType Share pipeline) and sets the group's configs as the operator does.
func (b *broker) shareConfig(cfg *workerconfig.Config, l shareLimits, maxInFlight int32) *workerconfig.Config {
	b.t.Helper()
	cfg.Source.GroupType = workerconfig.GroupTypeShare
	cfg.Source.Share = &workerconfig.Share{RetryAttempts: l.retries, DeliveryCountLimit: l.deliveryLimit, RecordLockDuration: metav1.Duration{Duration: l.lock}}
	cfg.Delivery.RetryTopics = nil
	cfg.Processing = workerconfig.Processing{Ordering: workerconfig.OrderingUnordered, MaxInFlight: maxInFlight}
	cfg.Consumer.MaxPollRecords = maxInFlight
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := kafka.EnsureShareGroup(ctx, b.client, cfg.Source.ConsumerGroup, kafka.ShareGroupSettings{
		StartFrom: cfg.Source.StartFrom, RecordLock: l.lock, DeliveryCountLimit: l.deliveryLimit,
	}); err != nil {
		b.t.Fatal(err)
	}
	return cfg
}

// shareLag is the share group's lag over the source topic (-1: not known yet).
func (b *broker) shareLag(group string) int64 {
	b.t.Helper()
	d, err := b.admin.DescribeShareGroupOffsets(context.Background(), b.name(group))
	if err != nil {
		return -1
	}
	g, ok := d[b.name(group)]
	if !ok || g.Err != nil || len(g.Offsets) == 0 {
		return -1
	}
	var lag int64
	for _, ps := range g.Offsets {
		for _, p := range ps {
			if p.Err != nil || p.Lag < 0 {
				return -1
			}
			lag += p.Lag
		}
	}
	return lag
}

// attemptLog is a real HTTP service that counts every call per body (the
// record's value), accepted or not.
type attemptLog struct {
	mu       sync.Mutex
	calls    map[string]int
	accepted map[string]int
}

func newAttemptLog(t *testing.T, respond func(body string, call int) int) (*attemptLog, string) {
	l := &attemptLog{calls: map[string]int{}, accepted: map[string]int{}}
	svc := newService(t, func(c call) int {
		l.mu.Lock()
		l.calls[c.body]++
		n := l.calls[c.body]
		l.mu.Unlock()
		code := respond(c.body, n)
		if code == http.StatusOK {
			l.mu.Lock()
			l.accepted[c.body]++
			l.mu.Unlock()
		}
		return code
	})
	return l, svc.srv.URL
}

func (l *attemptLog) counts() (calls, accepted map[string]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.calls), maps.Clone(l.accepted)
}

func values(from, to int) []string {
	out := make([]string, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, "v-"+strconv.Itoa(i))
	}
	return out
}

// TestShareGroupSpreadsTwoPartitionsOverFiveWorkers: a share group's members
// each get records, past the partition count (a consumer group would leave
// three of five idle), every record is handled and acknowledged (the group's
// lag drains to 0), and none is dead-lettered.
func TestShareGroupSpreadsTwoPartitionsOverFiveWorkers(t *testing.T) {
	b := newShareBroker(t, defaultShareLimits)
	b.createTopics(2, "orders", "orders.dlq")
	log, url := newAttemptLog(t, func(string, int) int {
		time.Sleep(10 * time.Millisecond) // a downstream that takes its time
		return http.StatusOK
	})
	const n = 400
	var workers []*running
	for range 5 {
		cfg := b.shareConfig(b.httpConfig(url), defaultShareLimits, 8)
		cfg.RateLimit.WarmupRecordsPerSecond = 0
		workers = append(workers, startWorker(t, cfg, nil))
	}
	b.produce("orders", 0, n, nil)

	eventually(t, 60*time.Second, "every record accepted and the share group's lag at 0", func() bool {
		_, accepted := log.counts()
		return len(accepted) == n && b.shareLag("test.orders") == 0
	})
	_, accepted := log.counts()
	for _, v := range values(0, n) {
		if accepted[v] == 0 {
			t.Errorf("%s never reached the service", v)
		}
	}
	for i, w := range workers {
		if got := counterValue(t, w.w, metricRecords, "outcome", outcomeProcessed); got == 0 {
			t.Errorf("worker %d of 5 on 2 partitions handled no record: the share group did not spread them", i)
		}
	}
	if dl := b.readAll("orders.dlq"); len(dl) != 0 {
		t.Errorf("%d records dead-lettered, want none", len(dl))
	}
}

// TestShareGroupTransientFailuresAreRedeliveredThenDeadLettered: a record that
// fails transiently is released and tried again, by the broker's delivery
// count, retries+1 times in all; then it goes to the dead-letter topic once,
// with its class and the delivery count as its attempt, and is acknowledged
// (never delivered again). A record that fails once and then succeeds is
// processed, not dead-lettered. Other records are not held up.
func TestShareGroupTransientFailuresAreRedeliveredThenDeadLettered(t *testing.T) {
	b := newShareBroker(t, defaultShareLimits)
	b.createTopics(2, "orders", "orders.dlq")
	log, url := newAttemptLog(t, func(body string, call int) int {
		switch {
		case body == "v-3":
			return http.StatusServiceUnavailable
		case body == "v-7" && call == 1:
			return http.StatusBadGateway
		}
		return http.StatusOK
	})
	cfg := b.shareConfig(b.httpConfig(url), defaultShareLimits, 8)
	cfg.CircuitBreaker.FailureThreshold = 100 // this test is about the retries
	w := startWorker(t, cfg, nil)
	b.produce("orders", 0, 20, nil)

	eventually(t, 30*time.Second, "v-3 dead-lettered and the rest accepted", func() bool {
		_, accepted := log.counts()
		return len(accepted) == 19 && len(b.readAll("orders.dlq")) == 1 && b.shareLag("test.orders") == 0
	})
	time.Sleep(time.Second) // a redelivery after the dead letter would show now
	calls, accepted := log.counts()
	if got, want := calls["v-3"], int(defaultShareLimits.retries)+1; got != want {
		t.Errorf("v-3 was tried %d times, want %d (the first delivery and %d retries)", got, want, defaultShareLimits.retries)
	}
	if calls["v-7"] != 2 || accepted["v-7"] != 1 {
		t.Errorf("v-7 (fails once): %d calls, %d accepted, want 2 and 1", calls["v-7"], accepted["v-7"])
	}
	dl := b.readAll("orders.dlq")
	if len(dl) != 1 || string(dl[0].Value) != "v-3" {
		t.Fatalf("dead letters %v, want v-3 alone", dl)
	}
	h := headerMap(dl[0])
	if h[HeaderErrorClass] != "transient" || h[HeaderAttempt] != "3" || h[HeaderOriginalTopic] != b.name("orders") {
		t.Errorf("dead letter headers %v: want class transient, attempt 3 (its third delivery), the source topic", h)
	}
	if got := counterValue(t, w.w, metricRecords, "outcome", outcomeRetried); got != 3 {
		t.Errorf("retried = %v, want 3 (v-3 twice, v-7 once)", got)
	}
}

// TestShareGroupPoisonIsDeadLetteredOnceNotRedelivered: a poison pill goes to
// the dead-letter topic at its first delivery and is acknowledged, so the
// broker never hands it out again.
func TestShareGroupPoisonIsDeadLetteredOnceNotRedelivered(t *testing.T) {
	b := newShareBroker(t, defaultShareLimits)
	b.createTopics(1, "orders", "orders.dlq")
	log, url := newAttemptLog(t, func(body string, _ int) int {
		if body == "v-2" {
			return http.StatusUnprocessableEntity
		}
		return http.StatusOK
	})
	startWorker(t, b.shareConfig(b.httpConfig(url), defaultShareLimits, 8), nil)
	b.produce("orders", 0, 10, nil)
	eventually(t, 30*time.Second, "v-2 dead-lettered, the rest accepted, lag 0", func() bool {
		_, accepted := log.counts()
		return len(accepted) == 9 && len(b.readAll("orders.dlq")) == 1 && b.shareLag("test.orders") == 0
	})
	time.Sleep(time.Second)
	if calls, _ := log.counts(); calls["v-2"] != 1 {
		t.Errorf("the poison pill was tried %d times, want once", calls["v-2"])
	}
	if h := headerMap(b.readAll("orders.dlq")[0]); h[HeaderErrorClass] != "poison" || h[HeaderAttempt] != "1" {
		t.Errorf("dead letter headers %v: want class poison, attempt 1", h)
	}
}

// TestShareGroupOpenCircuitHoldsRecordsAndRenewsTheirLocks: while the
// downstream is down the breaker opens and the worker holds the records it
// has, renewing their locks past the lock duration, instead of giving them
// back (which would spend their delivery counts until the broker archives
// them: lost without a dead letter). When the downstream recovers each record
// is accepted once (a lock that ran out would have had it delivered again)
// and none is dead-lettered. (Acknowledgements may be refused: kgo fetches
// ahead, and the trial call's released record sits in its buffer past its
// lock; the worker releases it unhandled.)
func TestShareGroupOpenCircuitHoldsRecordsAndRenewsTheirLocks(t *testing.T) {
	l := shareLimits{retries: 2, deliveryLimit: 4, lock: time.Second}
	b := newShareBroker(t, l)
	b.createTopics(1, "orders", "orders.dlq")
	var mu sync.Mutex
	down := true
	log, url := newAttemptLog(t, func(string, int) int {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	cfg := b.shareConfig(b.httpConfig(url), l, 20)
	cfg.CircuitBreaker.FailureThreshold = 1
	cfg.CircuitBreaker.OpenDuration = metav1.Duration{Duration: 1500 * time.Millisecond}
	w := startWorker(t, cfg, nil)
	b.produce("orders", 0, 20, nil)
	eventually(t, 10*time.Second, "the circuit open", func() bool {
		return counterValue(t, w.w, metricCircuitState, "", "") == circuitOpen
	})
	time.Sleep(3500 * time.Millisecond) // over three lock durations, two trial calls
	mu.Lock()
	down = false
	mu.Unlock()

	eventually(t, 30*time.Second, "every record accepted, lag 0", func() bool {
		_, accepted := log.counts()
		return len(accepted) == 20 && b.shareLag("test.orders") == 0
	})
	_, accepted := log.counts()
	for v, n := range accepted {
		if n != 1 {
			t.Errorf("%s accepted %d times: its lock ran out while the worker held it", v, n)
		}
	}
	if dl := b.readAll("orders.dlq"); len(dl) != 0 {
		t.Errorf("%d records dead-lettered during the outage, want none: the held records spent their deliveries", len(dl))
	}
}

// TestShareGroupKilledWorkersRecordsGoToAnotherWorker: a worker process
// SIGKILLed while its records are at the sink acknowledged none of them, so
// the broker hands them to the worker that is left, which handles them:
// nothing is lost. (A worker that acknowledged on receipt, or polled again
// while holding records, which kgo takes as accepting them, loses them here.)
func TestShareGroupKilledWorkersRecordsGoToAnotherWorker(t *testing.T) {
	b := newShareBroker(t, defaultShareLimits)
	b.createTopics(2, "orders", "orders.dlq")
	var mu sync.Mutex
	hang := true
	release := make(chan struct{})
	held := 0
	log, url := newAttemptLog(t, func(string, int) int {
		mu.Lock()
		h := hang
		if h {
			held++
		}
		mu.Unlock()
		if h {
			<-release // the victim's calls never come back while it lives
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	defer close(release)
	cfg := b.shareConfig(b.httpConfig(url), defaultShareLimits, 10)
	cfg.CircuitBreaker.FailureThreshold = 100
	victimCfg := *cfg
	victimCfg.Server.Port = freePort(t)
	victimLog := newWorkerProcess(t, &victimCfg)
	victim := victimLog.start()
	b.produce("orders", 0, 50, nil)
	eventually(t, 30*time.Second, "the victim holding records at the sink", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return held >= 10
	})
	// Long enough for any acknowledgement it made to reach the broker (kgo
	// sends them at least every second): one made too early would show.
	time.Sleep(2500 * time.Millisecond)
	mu.Lock()
	hang = false
	mu.Unlock()
	_ = victim.Process.Kill()
	_ = victim.Wait()

	startWorker(t, cfg, nil)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, accepted := log.counts()
		if len(accepted) == 50 && b.shareLag("test.orders") == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 50 records accepted, share lag %d, after 30 s; the victim's log:\n%s", len(accepted), b.shareLag("test.orders"), victimLog.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if dl := b.readAll("orders.dlq"); len(dl) != 0 {
		t.Errorf("%d records dead-lettered, want none", len(dl))
	}
}

// TestShareGroupShutdownReleasesWhatItDidNotStart: on SIGTERM a share member
// finishes the records at its sink, acknowledges them, and gives back the
// rest of its poll at once: the next worker gets them well before their locks
// (15 s) would have run out, and nothing is handled twice.
func TestShareGroupShutdownReleasesWhatItDidNotStart(t *testing.T) {
	b := newShareBroker(t, defaultShareLimits)
	b.createTopics(1, "orders", "orders.dlq")
	log, url := newAttemptLog(t, func(string, int) int {
		time.Sleep(200 * time.Millisecond)
		return http.StatusOK
	})
	cfg := b.shareConfig(b.httpConfig(url), defaultShareLimits, 2)
	cfg.Consumer.MaxPollRecords = 20 // a poll holds far more than the sink takes at once
	first := startWorker(t, cfg, nil)
	b.produce("orders", 0, 40, nil)
	eventually(t, 10*time.Second, "the first worker handling records", func() bool {
		_, accepted := log.counts()
		return len(accepted) >= 2
	})
	first.stop(t)
	stoppedAt := time.Now()

	startWorker(t, cfg, nil)
	eventually(t, 10*time.Second, "every record accepted, lag 0 (well before the 15 s lock)", func() bool {
		_, accepted := log.counts()
		return len(accepted) == 40 && b.shareLag("test.orders") == 0
	})
	t.Logf("the rest was handled %v after the first worker stopped", time.Since(stoppedAt).Round(time.Millisecond))
	calls, _ := log.counts()
	for v, n := range calls {
		if n != 1 {
			t.Errorf("%s reached the sink %d times, want once", v, n)
		}
	}
}

// TestShareGroupMemberOnAnIdleTopicIsReady: a share member reports no
// assignment, so readiness comes from polls that run their course without an
// error: on a topic with nothing to read the worker is ready (it would
// otherwise never be, and a Deployment of share workers never Available).
func TestShareGroupMemberOnAnIdleTopicIsReady(t *testing.T) {
	b := newShareBroker(t, defaultShareLimits)
	b.createTopics(1, "orders", "orders.dlq")
	w := startWorker(t, b.shareConfig(b.config(), defaultShareLimits, 8), nil)
	eventually(t, 10*time.Second, "/readyz OK on an idle topic", func() bool {
		code, _ := readyzBody(w.addr)
		return code == http.StatusOK
	})
}
