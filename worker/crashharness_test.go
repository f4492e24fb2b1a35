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
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
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

// slot is one worker of the group, restarted after each kill as a new pod.
type slot struct {
	r      *crashRun
	n      int
	proc   *workerProcess
	port   int32
	dsn    string // its DSN file (postgres guarantees)
	starts int
	cur    *workerRun // the last process started, nil before the first
}

// workerRun is one process of a slot.
type workerRun struct {
	pod      string
	port     int32
	cmd      *exec.Cmd
	started  time.Time
	killedAt time.Time
	exited   chan struct{}
	err      error       // how it exited, set before exited closes
	ended    atomic.Bool // the harness killed or stopped it
}

func (w *workerRun) clientID() string          { return "sluice-worker-" + w.pod }
func (w *workerRun) txnID(group string) string { return group + "-" + w.pod }

func (w *workerRun) running() bool {
	select {
	case <-w.exited:
		return false
	default:
		return true
	}
}

// kill SIGKILLs the process and waits until it is gone (safe on kfake's
// goroutine: it waits for nothing kfake does).
func (w *workerRun) kill() {
	w.ended.Store(true)
	w.killedAt = time.Now()
	_ = w.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-w.exited:
	case <-time.After(5 * time.Second):
	}
}

// terminate sends SIGTERM (the graceful shutdown).
func (w *workerRun) terminate() {
	w.ended.Store(true)
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
}

var metricsClient = &http.Client{Timeout: 2 * time.Second}

// progress is what the process handled since it started, from its metrics.
func (w *workerRun) progress() (processed float64, desc string) {
	resp, err := metricsClient.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", w.port))
	if err != nil {
		return 0, "no metrics: " + err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	v := func(outcome string) float64 {
		return sampleValue(string(body), fmt.Sprintf(`%s{outcome="%s",pipeline="orders"} `, metricRecords, outcome))
	}
	processed = v(outcomeProcessed)
	return processed, fmt.Sprintf("%.0f processed, %.0f retried, %.0f dead-lettered, %.0f duplicates skipped since its start",
		processed, v(outcomeRetried), v(outcomeDeadLettered), v(outcomeDuplicate))
}

// start starts the slot's next process.
func (s *slot) start() *workerRun {
	s.starts++
	pod := fmt.Sprintf("w%d-%d", s.n, s.starts)
	if s.dsn != "" {
		s.r.db.writeDSN(s.dsn, pod)
	}
	s.proc.env = []string{"POD_NAME=" + pod}
	cmd := s.proc.start()
	w := &workerRun{pod: pod, port: s.port, cmd: cmd, started: time.Now(), exited: make(chan struct{})}
	go func() {
		w.err = cmd.Wait()
		close(w.exited)
	}()
	s.cur = w
	return w
}

func (s *slot) up() bool { return s.cur != nil && s.cur.running() }

// groupView is the harness's picture of the group, refreshed while it waits:
// traps read it on kfake's goroutine, where they can't ask kfake.
type groupView struct {
	stable   bool
	byMember map[string]string // member ID → client ID
	memberOf map[string]string // client ID → member ID
	owner    map[tp]string     // partition → client ID of its owner
	// eligible are the running workers that delivered records since they
	// started and are members of the group, by client ID.
	eligible map[string]*workerRun
	progress map[string]string // client ID → what it handled since its start
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
	return r.drainAndReport()
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

// refreshView reads the group from kfake and each worker's progress.
func (r *crashRun) refreshView() {
	gi := r.b.cluster.GroupInfo(r.b.group)
	v := groupView{byMember: map[string]string{}, memberOf: map[string]string{}, owner: map[tp]string{},
		eligible: map[string]*workerRun{}, progress: map[string]string{}}
	if gi != nil {
		v.stable = gi.State == "Stable"
		for _, m := range gi.Members {
			v.byMember[m.MemberID] = m.ClientID
			v.memberOf[m.ClientID] = m.MemberID
			for topic, ps := range m.Assignment {
				for _, p := range ps {
					v.owner[tp{topic, p}] = m.ClientID
				}
			}
		}
	}
	for _, s := range r.slots {
		if !s.up() {
			continue
		}
		w := s.cur
		processed, desc := w.progress()
		v.progress[w.clientID()] = desc
		if processed > 0 && v.memberOf[w.clientID()] != "" {
			v.eligible[w.clientID()] = w
		}
	}
	r.mu.Lock()
	r.view = v
	r.mu.Unlock()
}

// eligibleMember is the working worker with a member ID, or nil.
func (r *crashRun) eligibleMember(memberID string) *workerRun {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.view.eligible[r.view.byMember[memberID]]
}

// eligibleTxn is the working worker with a transactional ID, or nil.
func (r *crashRun) eligibleTxn(txnID string) *workerRun {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range r.view.eligible {
		if w.txnID(r.b.group) == txnID {
			return w
		}
	}
	return nil
}

// eligibleOwner is the working worker that owns a partition, or nil.
func (r *crashRun) eligibleOwner(topic string, partition int32) *workerRun {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.view.eligible[r.view.owner[tp{topic, partition}]]
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

// supervise restarts, like a kubelet, a worker that exited on its own.
func (r *crashRun) supervise() {
	for _, s := range r.slots {
		if w := s.cur; w != nil && !w.running() && !w.ended.Load() {
			r.selfExits++
			r.t.Logf("worker %s exited on its own (%v) after %v; restarting it\n%s", w.pod, w.err,
				time.Since(w.started).Round(time.Millisecond), tail(s.proc.log(), 2000))
			s.start()
		}
	}
}

// waitReady restarts the killed workers (all but one when the next point
// needs a newcomer) and waits until the group is stable, no member belongs to
// a dead process, and a member is working. The killed members leave by their
// session or rebalance timeout; when one doesn't, the kfake defect that
// waitForDeadMembersToLeave describes has hit (a member killed while its
// first JoinGroup was pending is never expired, and keeps its partitions):
// then every worker stops, the group empties (with no live member kfake's
// timers do remove it), and they start again.
//
// A running worker may be no member for a while: kfake expired it while its
// JoinGroup waited (see the session timeout in newCrashRun); it goes on with
// its old partitions, its commits refused, until it rejoins by itself. The
// harness does not wait for it (it is never a victim meanwhile).
func (r *crashRun) waitReady(needsNewcomer bool) {
	r.t.Helper()
	keepDown := 0
	if needsNewcomer {
		keepDown = 1
	}
	var down []*slot
	for _, s := range r.slots {
		if !s.up() {
			down = append(down, s)
		}
	}
	for len(down) > keepDown {
		down[0].start()
		down = down[1:]
	}
	if len(down) < keepDown {
		r.t.Fatalf("the harness needs a stopped worker to join as the newcomer and has none")
	}
	for attempt := 1; ; attempt++ {
		deadline := time.Now().Add(readyWithin)
		for time.Now().Before(deadline) {
			r.supervise()
			r.refreshView()
			ghosts, _ := r.membership()
			r.mu.Lock()
			ok := r.view.stable && len(ghosts) == 0 && len(r.view.eligible) > 0
			r.mu.Unlock()
			if ok {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		ghosts, absent := r.membership()
		if attempt == 2 {
			r.dump("the group did not settle twice in %v (members of dead workers %v, workers not in the group %v)", readyWithin, ghosts, absent)
		}
		r.emptyGroup(fmt.Sprintf("members of dead workers %v, workers not in the group %v after %v", ghosts, absent, readyWithin))
	}
}

// membership compares the group's members with the running workers: ghosts
// are members of processes that are gone, absent are running workers that are
// not members.
func (r *crashRun) membership() (ghosts, absent []string) {
	running := map[string]bool{}
	for _, s := range r.slots {
		if s.up() {
			running[s.cur.clientID()] = true
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range r.view.memberOf {
		if !running[id] {
			ghosts = append(ghosts, id)
		}
	}
	for id := range running {
		if r.view.memberOf[id] == "" {
			absent = append(absent, id)
		}
	}
	slices.Sort(ghosts)
	slices.Sort(absent)
	return ghosts, absent
}

// emptyGroup is the workaround for kfake's unexpired members: every worker
// stops gracefully, the group empties, and they start again.
func (r *crashRun) emptyGroup(why string) {
	r.t.Helper()
	r.t.Logf("the group did not settle (%s): kfake keeps members it should expire; stopping every worker until the group is empty", why)
	r.workarounds = append(r.workarounds, why)
	var restart []*slot
	for _, s := range r.slots {
		if s.up() {
			r.stop(s)
			restart = append(restart, s)
		}
	}
	r.b.waitForDeadMembersToLeave(r.t, 60*time.Second)
	for _, s := range restart {
		s.start()
	}
}

// stop shuts a worker down gracefully (SIGTERM) and expects a clean exit.
func (r *crashRun) stop(s *slot) {
	r.t.Helper()
	w := s.cur
	waitHealthy(r.t, w.port) // its SIGTERM handler is installed
	w.terminate()
	select {
	case <-w.exited:
		if w.err != nil {
			r.t.Errorf("worker %s did not exit cleanly on SIGTERM: %v\n%s", w.pod, w.err, tail(s.proc.log(), 3000))
		}
	case <-time.After(30 * time.Second):
		w.kill()
		r.t.Errorf("worker %s did not exit within 30s of SIGTERM", w.pod)
	}
}

// dump fails the run with the group, the flow and the workers' log tails.
func (r *crashRun) dump(format string, args ...any) {
	r.t.Helper()
	var logs []string
	for _, s := range r.slots {
		logs = append(logs, fmt.Sprintf("--- slot %d (%d starts), log tail:\n%s", s.n, s.starts, tail(s.proc.log(), 2500)))
	}
	r.mu.Lock()
	view := fmt.Sprintf("stable %v, members %v, eligible %d", r.view.stable, r.view.byMember, len(r.view.eligible))
	r.mu.Unlock()
	r.t.Fatalf(format+"\ngroup: %s\nprogress: %s\n%s", append(args, view, r.b.progress("orders"), strings.Join(logs, "\n"))...)
}

// flow writes records 0, 1, ... to "orders" in the background while the
// workers crash, pausing while the group lags by more than flowMaxBacklog, so
// there is always work in flight and the drain stays short.
type flow struct {
	r      *crashRun
	n      atomic.Int64 // records 0..n-1 are written
	stopCh chan struct{}
	done   chan struct{}
	once   sync.Once
}

func startFlow(r *crashRun) *flow {
	f := &flow{r: r, stopCh: make(chan struct{}), done: make(chan struct{})}
	go f.loop()
	return f
}

func (f *flow) loop() {
	defer close(f.done)
	// The tail is written after the rollout; flaky records need their
	// sequences, made for wl.total records.
	for from := 0; from+flowChunk <= f.r.plan.wl.total-tailRecords; from += flowChunk {
		for f.backlog() > flowMaxBacklog {
			if !f.wait(flowPause) {
				return
			}
		}
		if err := f.r.produce(from, from+flowChunk); err != nil {
			f.r.t.Errorf("the flow could not write records %d-%d: %v", from, from+flowChunk, err)
			return
		}
		f.n.Store(int64(from + flowChunk))
		if !f.wait(flowPause) {
			return
		}
	}
}

func (f *flow) wait(d time.Duration) bool {
	select {
	case <-f.stopCh:
		return false
	case <-time.After(d):
		return true
	}
}

// backlog is how far the group's commits of the source topic lag its end.
func (f *flow) backlog() int64 {
	b := f.r.b
	var lag int64
	for _, p := range b.cluster.PartitionInfos(b.name("orders")) {
		lag += p.HighWatermark
	}
	if gi := b.cluster.GroupInfo(b.group); gi != nil {
		for _, c := range gi.Commits[b.name("orders")] {
			lag -= c.Offset
		}
	}
	return lag
}

// halt stops the flow and waits for its last produce.
func (f *flow) halt() {
	f.once.Do(func() { close(f.stopCh) })
	<-f.done
}

func (f *flow) written() int { return int(f.n.Load()) }

// produce writes records from..to-1 (keys key-<i>, values from the workload).
func (r *crashRun) produce(from, to int) error {
	recs := make([]*kgo.Record, 0, to-from)
	for i := from; i < to; i++ {
		recs = append(recs, &kgo.Record{Topic: r.b.name("orders"), Key: fmt.Appendf(nil, "key-%d", i), Value: r.plan.wl.value(i), Timestamp: time.Now()})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return r.b.client.ProduceSync(ctx, recs...).FirstErr()
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
