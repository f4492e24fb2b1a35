package worker

import (
	"errors"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/worker/failure"
)

func TestBackoffGrowsAndCaps(t *testing.T) {
	b := backoffPolicy{initial: time.Second, multiplier: 4, max: 10 * time.Minute}
	want := []time.Duration{time.Second, 4 * time.Second, 16 * time.Second, 64 * time.Second, 256 * time.Second, 10 * time.Minute, 10 * time.Minute}
	for i, w := range want {
		if got := b.delay(i + 1); got != w {
			t.Errorf("delay(%d) = %v, want %v", i+1, got, w)
		}
	}
	huge := backoffPolicy{initial: time.Hour, multiplier: 100, max: 1 << 62}
	if got := huge.delay(40); got != 1<<62 {
		t.Errorf("overflow not capped: %v", got)
	}
}

func TestDecideRoute(t *testing.T) {
	now := time.Unix(1000, 0)
	b := backoffPolicy{initial: time.Second, multiplier: 4, max: time.Minute}
	retries := []string{"o.retry.1", "o.retry.2", "o.retry.3"}
	transient := failure.Transient(errors.New("503"))
	cases := []struct {
		name    string
		err     error
		attempt int
		retries []string
		want    route
	}{
		{"success is done", nil, 0, retries, route{kind: routeDone}},
		{"poison goes straight to the DLQ", failure.Poison(errors.New("bad json")), 0, retries, route{kind: routeDeadLetter, topic: "o.dlq"}},
		{"poison from a retry topic too", failure.Poison(errors.New("400")), 2, retries, route{kind: routeDeadLetter, topic: "o.dlq"}},
		{"first transient failure: retry 1 after 1s", transient, 0, retries, route{routeRetry, "o.retry.1", now.Add(time.Second), 1}},
		{"second: retry 2 after 4s", transient, 1, retries, route{routeRetry, "o.retry.2", now.Add(4 * time.Second), 2}},
		{"third: retry 3 after 16s", transient, 2, retries, route{routeRetry, "o.retry.3", now.Add(16 * time.Second), 3}},
		{"retries exhausted: DLQ", transient, 3, retries, route{kind: routeDeadLetter, topic: "o.dlq"}},
		{"no retry topics: DLQ", transient, 0, nil, route{kind: routeDeadLetter, topic: "o.dlq"}},
		{"unclassified counts as transient", errors.New("?"), 0, retries, route{routeRetry, "o.retry.1", now.Add(time.Second), 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := decideRoute(tc.err, tc.attempt, tc.retries, "o.dlq", b, now); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestDecideShareRoute(t *testing.T) {
	transient := failure.Transient(errors.New("503"))
	poison := failure.Poison(errors.New("bad json"))
	dlq := route{kind: routeDeadLetter, topic: "o.dlq"}
	redeliver := func(d int) route { return route{kind: routeRedeliver, level: d} }
	cases := []struct {
		name                     string
		err                      error
		deliveries, retries, max int32
		want                     route
	}{
		{"success is done", nil, 1, 3, 7, route{kind: routeDone}},
		{"poison goes to the DLQ at its first delivery", poison, 1, 3, 7, dlq},
		{"transient, first delivery: released", transient, 1, 3, 7, redeliver(1)},
		{"transient, third delivery: released (the third retry)", transient, 3, 3, 7, redeliver(3)},
		{"transient, retries used up: DLQ", transient, 4, 3, 7, dlq},
		{"transient after crash redeliveries beyond the retries: DLQ", transient, 6, 3, 7, dlq},
		{"no retries: DLQ at once", transient, 1, 0, 7, dlq},
		{"at the broker's limit a release would archive it: DLQ", transient, 2, 5, 2, dlq},
		{"below the broker's limit: released", transient, 1, 5, 2, redeliver(1)},
		{"unclassified counts as transient", errors.New("?"), 1, 3, 7, redeliver(1)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := decideShareRoute(tc.err, tc.deliveries, tc.retries, tc.max, "o.dlq"); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
