package worker

// The crash harness: several real cmd/worker processes in one consumer group,
// each SIGKILLed only while it works (it has delivered records since its start
// and has records in flight), at points spread over a record's life:
//
//   - sink-call: during the sink call (an insert held in PostgreSQL; the kafka
//     sink's produce held at the broker);
//   - after-sink-ack: the sink answered, the commit is on its way (the commit
//     request is dropped at the broker as its sender dies);
//   - copy-in-flight: a retry or dead-letter copy is on its way;
//   - copy-refused: a copy was refused, and the worker commits (the commit
//     lands as its sender dies): nothing past the refused record may be in it;
//   - rebalance: a second member is joining;
//   - shutdown: SIGTERM, then SIGKILL shortly after.
//
// Each kill is logged with its point, what its victim handled since it
// started and what it had in flight; the run fails if fewer than 80 % of the
// kills landed with records in flight. Killed workers are restarted (a new
// pod name, like a replaced pod), so a kill also moves partitions. The sink
// keeps a delivery log (crashsink_test.go), and the report at the end says
// how many records the sink saw more than once (redeliveries, allowed
// at-least-once) apart from those that took effect more than once (never
// allowed), and names every missing record.
//
// The kills are landed with kfake's request control (crashcontrol_test.go),
// so the harness runs on kfake only.

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/internal/testkafka"
	"github.com/sluice-dev/sluice/internal/workerconfig"
)

// guarantee is the delivery guarantee a crash run proves.
type guarantee int

const (
	postgresAtLeastOnce guarantee = iota
	postgresExactlyOnce
	kafkaExactlyOnce
)

func (g guarantee) String() string {
	switch g {
	case postgresAtLeastOnce:
		return "at-least-once, postgres sink"
	case postgresExactlyOnce:
		return "exactly-once, postgres sink (offsets in the database)"
	}
	return "exactly-once, kafka sink (transactions)"
}

// crashPlan is what a crash run does.
type crashPlan struct {
	g     guarantee
	kills int
	// workers is how many worker slots the group has (one is down at the
	// start: it is the first rebalance's newcomer).
	workers int
	// wl is the records; wl.total is the most the flow writes.
	wl workload
	// faults are broker faults injected after kill i (round robin); nil: none.
	faults []func(b *broker)
	// ordering and maxInFlight set processing (empty: Partition, the
	// default). The ordering key is the Kafka record key; the idempotency
	// key stays crashConfig's JSON "id".
	ordering    string
	maxInFlight int32
	// keys > 0: record i has the Kafka key key-<i mod keys>, and the run
	// checks that each key's records took effect in offset order (the order
	// of n within a key). 0: record i has key-<i>, nothing is checked.
	keys int
}

// Flow and timing knobs.
const (
	flowChunk      = 100 // records per produce
	flowPause      = 50 * time.Millisecond
	flowMaxBacklog = 3000             // the flow waits while the group lags more
	tailRecords    = 2000             // written after the rollout, before the drain
	trapWithin     = 15 * time.Second // how long a point waits for its moment
	readyWithin    = 30 * time.Second // how long the group may take to settle
	stallWithin    = 30 * time.Second // the drain fails after this long without progress
	drainWithin    = 180 * time.Second
)

type crashRun struct {
	t     *testing.T
	b     *broker
	plan  crashPlan
	db    *deliveryDB // postgres guarantees
	q     *requests
	slots []*slot
	flow  *flow
	begin time.Time

	mu   sync.Mutex // guards view (read by traps on kfake's goroutine)
	view groupView

	kills       []killReport
	workarounds []string
	selfExits   int
	pointRuns   map[string]int
}

// killReport is one kill, as logged and counted.
type killReport struct {
	point    string
	pod      string
	up       time.Duration
	progress string
	inFlight bool
	evidence string
}

// newCrashRun sets up the broker, the sink, the slots and the request
// control; nothing runs yet.
func newCrashRun(t *testing.T, plan crashPlan) *crashRun {
	t.Helper()
	testkafka.FakeOnly(t, "lands its kills with kfake's request control")
	r := &crashRun{t: t, b: newBroker(t), plan: plan, pointRuns: map[string]int{}, begin: time.Now()}
	b := r.b
	topics := allTopics
	if plan.g == kafkaExactlyOnce {
		topics = []string{"orders", "orders.dlq", "orders-out"}
	}
	b.createTopics(4, topics...)
	cfg := crashConfig(t, b)
	// The session timeout just under the rebalance timeout (maxPollInterval,
	// 3 s), not crashConfig's 1 s: kfake expires a member by its session
	// timeout while its JoinGroup waits for the other members (Kafka keeps
	// such a member alive), and drops that JoinGroup unanswered; the member
	// then waits out its request timeout (~13 s) and rejoins, consuming its
	// old partitions meanwhile. With 1 s, a member slower than that to rejoin
	// (its poll is handled with rebalances blocked) cost a third of the kills
	// a 15 s stall.
	cfg.Consumer.SessionTimeout = metav1.Duration{Duration: cfg.Consumer.MaxPollInterval.Duration - 100*time.Millisecond}
	// A sink call may last up to the rebalance timeout (the config check
	// refuses longer): a held insert outlasts the few seconds a point takes.
	cfg.Delivery.ProcessingTimeout = cfg.Consumer.MaxPollInterval
	switch plan.g {
	case postgresAtLeastOnce:
		r.db = newDeliveryDB(t, "orders")
		cfg.Sink = workerconfig.Sink{Postgres: &workerconfig.PostgresSink{Table: "orders", KeyColumn: "id", PayloadColumn: "payload"}}
	case postgresExactlyOnce:
		r.db = newDeliveryDB(t, "events")
		cfg = exactlyOncePostgres(cfg, "")
	case kafkaExactlyOnce:
		cfg.Sink = workerconfig.Sink{Kafka: &workerconfig.KafkaSink{Topic: b.name("orders-out")}}
		cfg.Delivery.Semantics = "ExactlyOnce"
	}
	if plan.ordering != "" {
		cfg.Processing = workerconfig.Processing{Ordering: plan.ordering, MaxInFlight: plan.maxInFlight}
	}
	if r.db != nil {
		r.db.createSequences(plan.wl)
	}
	for i := range plan.workers {
		c := *cfg
		c.Server.Port = freePort(t)
		s := &slot{r: r, n: i, port: c.Server.Port}
		if cfg.Sink.Postgres != nil {
			pg := *cfg.Sink.Postgres
			s.dsn = dsnFile(t)
			pg.DSNFile = s.dsn
			c.Sink.Postgres = &pg
		}
		s.proc = newWorkerProcess(t, &c)
		r.slots = append(r.slots, s)
	}
	r.q = newRequests(b.cluster, b.names(topics)...)
	t.Cleanup(func() { // a run that fails half-way leaves no worker behind
		if r.flow != nil {
			r.flow.halt()
		}
		for _, s := range r.slots {
			if s.up() {
				s.cur.kill()
			}
		}
	})
	return r
}

// run starts the flow and the workers, kills them plan.kills times, drains,
// and checks and reports what the sink saw.
func (r *crashRun) run() crashReport {
	r.t.Helper()
	r.flow = startFlow(r)
	for _, s := range r.slots[1:] {
		s.start()
	}
	points := r.points()
	for k := range r.plan.kills {
		p := points[k%len(points)]
		start := time.Now()
		r.waitReady(p.needsNewcomer)
		ready := time.Since(start)
		w, inFlight, evidence := p.kill(r)
		r.record(k, p.name, w, inFlight, evidence)
		r.t.Logf("  (the group settled in %v, the point came %v later)", ready.Round(time.Millisecond), (time.Since(start) - ready).Round(time.Millisecond))
		if len(r.plan.faults) > 0 {
			r.plan.faults[k%len(r.plan.faults)](r.b)
		}
	}
	r.t.Logf("%d kills done after %v; %d records written", r.plan.kills, time.Since(r.begin).Round(time.Millisecond), r.flow.written())
	rep := r.drainAndReport()
	if keep := os.Getenv("SLUICE_CRASH_KEEP_LOG"); keep != "" {
		var all []byte
		for _, s := range r.slots {
			all = append(all, s.proc.log()...)
		}
		_ = os.WriteFile(keep, all, 0o644)
	}
	return rep
}

// record logs a kill and keeps it for the report.
func (r *crashRun) record(k int, point string, w *workerRun, inFlight bool, evidence string) {
	r.mu.Lock()
	progress := r.view.progress[w.clientID()]
	r.mu.Unlock()
	rep := killReport{point: point, pod: w.pod, up: w.killedAt.Sub(w.started), progress: progress, inFlight: inFlight, evidence: evidence}
	r.kills = append(r.kills, rep)
	landed := "NOT in flight"
	if inFlight {
		landed = "in flight"
	}
	r.t.Logf("kill %d/%d at %s: %s after %v (%s); %s: %s", k+1, r.plan.kills, point, w.pod, rep.up.Round(time.Millisecond), progress, landed, evidence)
}

// alternate says, per point, whether this is an odd run (points alternate
// between two variants: drop or pass, terminate or let through).
func (r *crashRun) alternate(point string) bool {
	r.pointRuns[point]++
	return r.pointRuns[point]%2 == 0
}

// pickVictim waits until a worker is working (and, for the postgres points,
// owns a partition) and returns one at random.
func (r *crashRun) pickVictim(ownsPartition bool) *workerRun {
	r.t.Helper()
	deadline := time.Now().Add(readyWithin)
	for {
		r.supervise()
		r.refreshView()
		r.mu.Lock()
		var pick []*workerRun
		for id, w := range r.view.eligible {
			owns := false
			for _, owner := range r.view.owner {
				owns = owns || owner == id
			}
			if owns || !ownsPartition {
				pick = append(pick, w)
			}
		}
		r.mu.Unlock()
		if len(pick) > 0 {
			slices.SortFunc(pick, func(a, b *workerRun) int { return strings.Compare(a.pod, b.pod) })
			return pick[rand.N(len(pick))]
		}
		if time.Now().After(deadline) {
			r.dump("no worker handled a record within %v", readyWithin)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// trapped is what a fired trap reports.
type trapped struct {
	w        *workerRun
	evidence string
}

// awaitTrap waits for a trap to fire, keeping the view fresh meanwhile. When
// it does not fire in time it is disarmed and a working worker is killed
// anyway: the kill counts as not in flight.
func (r *crashRun) awaitTrap(tr *trap, fired <-chan trapped, what string) (*workerRun, bool, string) {
	r.t.Helper()
	deadline := time.After(trapWithin)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case ev := <-fired:
			return ev.w, true, ev.evidence
		case <-tick.C:
			r.refreshView()
		case <-deadline:
			r.q.disarm(tr)
			select { // it may have fired meanwhile
			case ev := <-fired:
				return ev.w, true, ev.evidence
			default:
			}
			w := r.pickVictim(false)
			w.kill()
			return w, false, fmt.Sprintf("no %s from a working worker within %v: killed anyway", what, trapWithin)
		}
	}
}

// dump fails the run with the group, the flow and the workers' log tails;
// their whole logs are kept in files.
func (r *crashRun) dump(format string, args ...any) {
	r.t.Helper()
	var logs []string
	for _, s := range r.slots {
		kept := filepath.Join(os.TempDir(), fmt.Sprintf("sluice-crash-%d-w%d.log", time.Now().UnixNano(), s.n))
		_ = os.WriteFile(kept, s.proc.log(), 0o644)
		logs = append(logs, fmt.Sprintf("--- worker slot %d (%d starts; full log: %s), tail:\n%s", s.n, s.starts, kept, tail(s.proc.log(), 2500)))
	}
	r.mu.Lock()
	view := fmt.Sprintf("stable %v, members %v, eligible %d", r.view.stable, r.view.byMember, len(r.view.eligible))
	r.mu.Unlock()
	r.t.Fatalf(format+"\ngroup: %s\nprogress: %s\n%s", append(args, view, r.b.progress("orders"), strings.Join(logs, "\n"))...)
}

// copyTopic reports whether a topic (the broker's name) is a retry or
// dead-letter topic.
func (r *crashRun) copyTopic(topic string) bool {
	return topic == r.b.name("orders.dlq") || strings.HasPrefix(topic, r.b.name("orders.retry."))
}

// consumedFrom is the topic a worker read a record from when it parked the
// copy c: the source for a first failure, else the retry topic of the
// attempts before.
func (r *crashRun) consumedFrom(c parkedCopy) string {
	if c.attempt <= 1 {
		return c.origin
	}
	return r.b.name(fmt.Sprintf("orders.retry.%d", c.attempt-1))
}

// keysOf lists up to max keys for messages.
func keysOf(keys []string, max int) string {
	if len(keys) > max {
		return strings.Join(keys[:max], ", ") + fmt.Sprintf(", … (%d in all)", len(keys))
	}
	return strings.Join(keys, ", ")
}
