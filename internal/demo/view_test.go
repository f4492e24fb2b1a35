package demo

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestRenderFrameShowsEveryPanel(t *testing.T) {
	s := snapshot{
		Elapsed: 65 * time.Second, Duration: 2 * time.Minute, Phase: "SPIKE: 500 records/s per pipeline",
		Chaos: true, Kills: 3, Restarts: 3, StateDir: "/repo/bin/demo", Receiver: "flaky: 5% of requests 503",
		Pipelines: []pipelineView{{
			Name: "orders",
			Row: spRow{Name: "orders", Ready: "True", Replicas: "6", Lag: "1820", DLQ: "14", Age: "70s",
				Topic: "orders", Group: "demo.orders", Rate: "580", Status: "6 of 6 workers available"},
			PartitionLag: []int64{310, 0, 290, 305, 300, 615}, TotalLag: 1820,
			LagHistory: []int64{0, 10, 400, 1200, 1820}, ReplicaHistory: []int32{1, 1, 5, 6, 6},
			Replicas: 6, ReadyWorkers: 5, ProducedRate: 500, DeliveredRate: 540, Produced: 9000, Delivered: 8500,
			DeadLetters: map[string]int{"poison: no idempotency key": 7, "poison: HTTP 400 (bad request)": 6, "transient: HTTP 503, retries exhausted": 1},
			Circuit:     map[string]int{"closed": 5, "open": 1},
			Events:      []string{"12:00:01  Normal  Scaled  scaled workers from 1 to 5 (LagAboveTarget): lag 2100"},
		}},
		Pods: []runningPod{{Name: "orders-worker-0123456789-bcdfg", PID: 4242, Ready: true, Restarts: 1}},
		Log:  []string{"12:00:02  chaos: SIGKILL orders-worker-0123456789-bcdfg (pid 4100)"},
	}
	frame := renderFrame(s, 120)
	for _, want := range []string{
		"t=1:05 / 2:00", "SPIKE", "chaos on (3 kills)",
		"NAME     READY   REPLICAS   LAG    DLQ   AGE   TOPIC    GROUP         RATE   STATUS",
		"orders   True    6          1820   14    70s   orders   demo.orders   580    6 of 6 workers available",
		"p5 ████████ 615", "now 1820, max 1820", "11566", "now 6, 5 ready",
		"DLQ        14: poison 13 (HTTP 400 (bad request) 6, no idempotency key 7) · transient 1 (HTTP 503, retries exhausted 1)",
		"circuit    closed 5 · open 1", "Scaled", "pid 4242", "chaos: SIGKILL",
	} {
		if !strings.Contains(frame, want) {
			t.Errorf("frame lacks %q:\n%s", want, frame)
		}
	}
	for _, line := range strings.Split(frame, "\n") {
		if utf8.RuneCountInString(line) > 120 {
			t.Errorf("line wider than the terminal: %q", line)
		}
	}
	if line := statusLine(s); !strings.Contains(line, "lag 1820") || strings.Contains(line, "\n") {
		t.Errorf("status line %q", line)
	}
}

func TestSparklineScalesToTheMaximum(t *testing.T) {
	if got := sparkline([]int64{0, 1, 4, 8}); got != "▁▂▅█" {
		t.Errorf("sparkline = %s", got)
	}
	if got := sparkline([]int64{0, 0}); got != "▁▁" {
		t.Errorf("all-zero sparkline = %s", got)
	}
	if got := replicaStrip([]int32{1, 6, 12}); got != "16+" {
		t.Errorf("replicaStrip = %s", got)
	}
}

func TestDLQReasonNamesTheCause(t *testing.T) {
	cases := []struct{ class, msg, want string }{
		{"poison", "idempotency key: record has no header \"event-id\"", "poison: no idempotency key"},
		{"poison", "HTTP 400: not a valid order", "poison: HTTP 400 (bad request)"},
		{"transient", "POST http://x: HTTP 503: shard unavailable", "transient: HTTP 503, retries exhausted"},
		{"transient", "context deadline exceeded", "transient: retries exhausted"},
		{"poison", "ERROR: invalid input syntax for type json (SQLSTATE 22P02)", "poison: invalid value for the table"},
	}
	for _, tc := range cases {
		if got := dlqReason(tc.class, tc.msg); got != tc.want {
			t.Errorf("dlqReason(%s, %q) = %q, want %q", tc.class, tc.msg, got, tc.want)
		}
	}
}
