package worker

import (
	"time"

	"github.com/sluice-dev/sluice/worker/failure"
)

// routeKind is where a handled record goes next.
type routeKind int

const (
	routeDone       routeKind = iota // the sink acknowledged it
	routeRetry                       // to a retry topic, to be tried again after a delay
	routeDeadLetter                  // to the dead-letter topic
	routeRedeliver                   // released to the share group, which delivers it again
)

// route is the decision for one record.
type route struct {
	kind  routeKind
	topic string
	dueAt time.Time
	// level is the retry topic's number (1 for <prefix>.1), 0 otherwise.
	level int
}

// backoffPolicy is the delay before retry n (1-based): min(initial × multiplier^(n-1), max).
type backoffPolicy struct {
	initial, max time.Duration
	multiplier   int64
}

func (b backoffPolicy) delay(n int) time.Duration {
	d := b.initial
	for i := 1; i < n; i++ {
		if d >= b.max || d > time.Duration(1<<62)/time.Duration(max(b.multiplier, 1)) {
			return b.max
		}
		d *= time.Duration(b.multiplier)
	}
	return min(d, b.max)
}

// decideRoute is the routing rule. attempt is how many times the record failed
// before this try (0 for a source record). Success is done; a poison pill goes
// to the dead-letter topic at once; a transient failure goes to retry topic
// attempt+1 while there is one, then to the dead-letter topic.
func decideRoute(err error, attempt int, retryTopics []string, deadLetter string, b backoffPolicy, now time.Time) route {
	switch failure.ClassOf(err) {
	case "":
		return route{kind: routeDone}
	case failure.ClassPoison:
		return route{kind: routeDeadLetter, topic: deadLetter}
	}
	if attempt < len(retryTopics) {
		return route{kind: routeRetry, topic: retryTopics[attempt], dueAt: now.Add(b.delay(attempt + 1)), level: attempt + 1}
	}
	return route{kind: routeDeadLetter, topic: deadLetter}
}

// decideShareRoute is the routing rule of a share group member. deliveries is
// the broker's delivery count of the record (1 the first time). A poison pill
// goes to the dead-letter topic at once; a transient failure is released for
// another delivery while it has retries left and the broker would deliver it
// again (a record released at the delivery count limit is archived: dropped
// without a dead letter), then goes to the dead-letter topic.
func decideShareRoute(err error, deliveries, retryAttempts, limit int32, deadLetter string) route {
	switch failure.ClassOf(err) {
	case "":
		return route{kind: routeDone}
	case failure.ClassPoison:
		return route{kind: routeDeadLetter, topic: deadLetter}
	}
	if deliveries <= retryAttempts && deliveries < limit {
		return route{kind: routeRedeliver, level: int(deliveries)}
	}
	return route{kind: routeDeadLetter, topic: deadLetter}
}
