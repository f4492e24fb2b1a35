package worker

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestCircuitOpensPausesInsteadOfDeadLetteringAndClosesWhenTheSinkRecovers(t *testing.T) {
	b := newBroker(t)
	b.createTopics(1, allTopics...)
	var down atomic.Bool
	down.Store(true)
	var calls atomic.Int32
	svc := newService(t, func(call) int {
		calls.Add(1)
		if down.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	cfg := b.httpConfig(svc.srv.URL)
	cfg.CircuitBreaker.FailureThreshold = 3
	cfg.CircuitBreaker.OpenDuration = metav1.Duration{Duration: 300 * time.Millisecond}
	b.produce("orders", 0, 20, nil)
	w := startWorker(t, cfg, nil)

	eventually(t, 10*time.Second, "the circuit opens", func() bool {
		return counterValue(t, w.w, metricCircuitState, "", "") == circuitOpen
	})
	// Through the outage, watch the paused-partitions gauge: partitions are
	// paused except for the moments a trial call is let through.
	outage := 1500 * time.Millisecond
	maxPaused := 0.0
	for end := time.Now().Add(outage); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		maxPaused = max(maxPaused, counterValue(t, w.w, metricPaused, "", ""))
	}
	// While the sink is down the worker stops hammering it: after the threshold,
	// only one trial call per open period.
	maxCalls := int32(3 + outage/(300*time.Millisecond) + 2)
	if n := calls.Load(); n > maxCalls {
		t.Errorf("the sink was called %d times during the outage, want at most %d", n, maxCalls)
	}
	if n := len(b.readAll("orders.dlq")); n != 0 {
		t.Errorf("%d records dead-lettered during the outage: an open circuit must pause, not drain", n)
	}
	// Only the failures that tripped the breaker (while it was closed) were
	// parked; trial calls that failed left their records in the source.
	if n := len(b.readAll("orders.retry.1")) + len(b.readAll("orders.retry.2")); n > 3 {
		t.Errorf("%d records parked in retry topics during the outage, want at most the 3 that tripped the breaker", n)
	}
	if maxPaused < 1 {
		t.Errorf("no partition was paused during the outage")
	}

	down.Store(false)
	eventually(t, 15*time.Second, "every record delivered after recovery", func() bool {
		return len(svc.acceptedBodies()) == 20
	})
	eventually(t, 5*time.Second, "the circuit closes", func() bool {
		return counterValue(t, w.w, metricCircuitState, "", "") == circuitClosed
	})
	if n := len(b.readAll("orders.dlq")); n != 0 {
		t.Errorf("%d records dead-lettered", n)
	}
}

func TestRateLimitAndWarmupHold(t *testing.T) {
	b := newBroker(t)
	b.createTopics(1, allTopics...)
	svc := newService(t, ok)
	cfg := b.httpConfig(svc.srv.URL)
	// Ramp from 20 to 100 records/s over 1s, then 100/s: 150 records take
	// about 1.9s; unlimited they take a few milliseconds.
	cfg.RateLimit.RecordsPerSecond = 100
	cfg.RateLimit.WarmupRecordsPerSecond = 20
	cfg.RateLimit.WarmupDuration = metav1.Duration{Duration: time.Second}
	b.produce("orders", 0, 150, nil)
	start := time.Now()
	w := startWorker(t, cfg, nil)

	eventually(t, 20*time.Second, "all delivered", func() bool { return len(svc.accepted()) == 150 })
	calls := svc.accepted()
	inFirstHalfSecond := 0
	for _, c := range calls {
		if c.at.Sub(start) < 500*time.Millisecond {
			inFirstHalfSecond++
		}
	}
	// The ramp allows 20×0.5 + 40×0.25 = 20 records in the first half second,
	// plus a burst of a tenth of a second: generous bound 40.
	if inFirstHalfSecond > 40 {
		t.Errorf("%d records in the first 0.5s of warm-up, want at most ~30", inFirstHalfSecond)
	}
	if took := calls[len(calls)-1].at.Sub(start); took < 1400*time.Millisecond {
		t.Errorf("150 records took %v, want about 1.9s under the limit", took)
	}
	// After the ramp: the last 50 records come at about 100/s.
	steady := calls[len(calls)-1].at.Sub(calls[len(calls)-51].at)
	if rate := 50 / steady.Seconds(); rate > 130 {
		t.Errorf("steady rate %.0f records/s, limit is 100", rate)
	}
	if lim := counterValue(t, w.w, metricRateLimit, "", ""); lim != 100 {
		t.Errorf("rate limit gauge = %v, want 100", lim)
	}
}

func TestWarmupLimit(t *testing.T) {
	cases := []struct {
		elapsed, duration time.Duration
		from, to          float64
		want              float64
	}{
		{0, time.Minute, 100, 1000, 100},
		{30 * time.Second, time.Minute, 100, 1000, 550},
		{time.Minute, time.Minute, 100, 1000, 1000},
		{2 * time.Minute, time.Minute, 100, 1000, 1000},
		{30 * time.Second, time.Minute, 100, 0, 100 + (100*unlimitedRampFactor-100)/2},
		{time.Minute, time.Minute, 100, 0, -1}, // unlimited after the ramp
		{0, 0, 100, 0, -1},                     // no warm-up, no limit
		{0, 0, 100, 500, 500},                  // no warm-up, steady limit
	}
	for _, tc := range cases {
		got := float64(warmupLimit(tc.elapsed, tc.duration, tc.from, tc.to))
		if tc.want < 0 {
			if got < 1e300 {
				t.Errorf("warmupLimit(%v/%v, %v→%v) = %v, want unlimited", tc.elapsed, tc.duration, tc.from, tc.to, got)
			}
			continue
		}
		if got != tc.want {
			t.Errorf("warmupLimit(%v/%v, %v→%v) = %v, want %v", tc.elapsed, tc.duration, tc.from, tc.to, got, tc.want)
		}
	}
}

func TestHealthReadinessAndMetricsEndpoints(t *testing.T) {
	b := newBroker(t)
	b.createTopics(1, allTopics...)
	svc := newService(t, ok)
	b.produce("orders", 0, 3, nil)
	w := startWorker(t, b.httpConfig(svc.srv.URL), nil)
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + w.addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer func() { _ = resp.Body.Close() }()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}
	eventually(t, 10*time.Second, "/readyz OK once joined", func() bool { code, _ := get("/readyz"); return code == http.StatusOK })
	eventually(t, 10*time.Second, "delivered", func() bool { return len(svc.accepted()) == 3 })
	_, body := get("/metrics")
	for _, want := range []string{
		fmt.Sprintf(`%s{outcome="processed",pipeline="orders"} 3`, metricRecords),
		metricEndToEnd + "_bucket", metricProcessing + "_count", metricCircuitState,
		fmt.Sprintf(`%s{kind="assigned",pipeline="orders"} 1`, metricRebalances),
		"sluice_worker_kafka_", // franz-go client metrics (kprom)
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// A sink that stops answering makes the worker unready (not dead).
	svc.srv.Close()
	eventually(t, 10*time.Second, "/readyz fails when the sink is gone", func() bool { code, _ := get("/readyz"); return code == http.StatusServiceUnavailable })
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d after the sink went away; liveness must not depend on the sink", code)
	}
}
