package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/internal/testkafka"
	"github.com/sluice-dev/sluice/internal/workerconfig"
)

// Broker-failure tests: the real cmd/worker binary against the real 3-node
// Apache Kafka cluster of hack/kafka.sh, whose nodes the tests kill, stop and
// start (testkafka.Control). Every topic has replication factor 3 and
// min.insync.replicas 2, the production shape. They are opt-in (they need that
// cluster and take minutes): `make test-broker-failures`, or
//
//	make kafka-up
//	SLUICE_TEST_BROKER_FAILURES=1 SLUICE_TEST_KAFKA=$(hack/kafka.sh bootstrap) \
//	  go test -race -count=1 -run '^TestBrokerFailure' -v ./worker/
//
// Without SLUICE_TEST_BROKER_FAILURES=1 they skip, saying so; with it and no
// cluster they fail.

// failureTopics: replicated like production, so that losing one broker loses
// nothing and losing two makes acks=all produces fail with NOT_ENOUGH_REPLICAS.
var failureTopics = map[string]string{"min.insync.replicas": "2"}

// newFailureBroker is newBroker on the real cluster, with its Control.
func newFailureBroker(t *testing.T) (*broker, *testkafka.Control) {
	t.Helper()
	c, ctl := testkafka.BrokerFailures(t)
	return brokerOn(t, c), ctl
}

// failureConfig is the worker config of the broker-failure tests: keys from the
// "id" JSON field (so non-JSON records are poison pills), session and poll
// timeouts long enough to ride out a leader election (a killed node is fenced
// after 3 s), retry backoff of 0.5, 1 and 2 s, and a breaker that a few failed
// batches do not open.
func failureConfig(t *testing.T, b *broker) *workerconfig.Config {
	cfg := crashConfig(t, b)
	cfg.Consumer.SessionTimeout = metav1.Duration{Duration: 3 * time.Second}
	cfg.Consumer.HeartbeatInterval = metav1.Duration{Duration: 300 * time.Millisecond}
	cfg.Consumer.MaxPollInterval = metav1.Duration{Duration: 10 * time.Second}
	cfg.Delivery.Backoff = workerconfig.Backoff{Initial: metav1.Duration{Duration: 500 * time.Millisecond}, Multiplier: 2, Max: metav1.Duration{Duration: 2 * time.Second}}
	cfg.CircuitBreaker.FailureThreshold = 50
	return cfg
}

// ordersDB is postgresDB with a "flaky" trigger: a record whose payload names a
// sequence in "flaky" fails its first two inserts transiently (SQLSTATE 40001,
// failing its statement; the sink writes the batch again row by row, so the
// flaky record fails alone and walks the retry topics without its batch). The
// trigger runs once per statement and advances the sequence of every flaky
// record in it (nextval is not rolled back).
func ordersDB(t *testing.T) (string, *pgx.Conn) {
	t.Helper()
	dsn, conn := postgresDB(t)
	if _, err := conn.Exec(context.Background(), `
		CREATE FUNCTION flaky() RETURNS trigger LANGUAGE plpgsql AS $$
		DECLARE failing text;
		BEGIN
			SELECT string_agg(id, ',') INTO failing
			FROM (SELECT id, nextval(payload->>'flaky') AS n FROM new_rows WHERE payload ? 'flaky') attempts
			WHERE n <= 2;
			IF failing IS NOT NULL THEN
				RAISE EXCEPTION 'records % are flaky', failing USING ERRCODE = '40001';
			END IF;
			RETURN NULL;
		END $$;
		CREATE TRIGGER flaky AFTER INSERT ON orders REFERENCING NEW TABLE AS new_rows
			FOR EACH STATEMENT EXECUTE FUNCTION flaky();`); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(file, []byte(dsn), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, conn
}

// workload is the records of a broker-failure test: {"id":"r-<i>","n":<i>},
// every poisonEvery-th one not JSON, every flakyEvery-th one (if > 0) flaky.
type workload struct {
	total, poisonEvery, flakyEvery int
}

func (w workload) poison(i int) bool { return i%w.poisonEvery == w.poisonEvery-1 }
func (w workload) flaky(i int) bool  { return w.flakyEvery > 0 && i%w.flakyEvery == w.flakyEvery/2 }

func (w workload) value(i int) []byte {
	switch {
	case w.poison(i):
		return fmt.Appendf(nil, "poison-%d", i)
	case w.flaky(i):
		return fmt.Appendf(nil, `{"id":"r-%d","n":%d,"flaky":"flaky_%d"}`, i, i, i)
	}
	return fmt.Appendf(nil, `{"id":"r-%d","n":%d}`, i, i)
}

// want is the good records' count and sum of n, and the number of pills.
func (w workload) want() (rows int, sum int64, pills int) {
	for i := range w.total {
		if w.poison(i) {
			pills++
		} else {
			rows++
			sum += int64(i)
		}
	}
	return rows, sum, pills
}

// createSequences creates the flaky records' sequences.
func (w workload) createSequences(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	var stmts []string
	for i := range w.total {
		if w.flaky(i) {
			stmts = append(stmts, fmt.Sprintf("CREATE SEQUENCE flaky_%d;", i))
		}
	}
	if len(stmts) > 0 {
		if _, err := conn.Exec(context.Background(), strings.Join(stmts, "\n")); err != nil {
			t.Fatal(err)
		}
	}
}

// waitAllArrived waits until PostgreSQL holds every good record of wl, the DLQ
// every pill, and the group has committed every source record, checking on the
// worker meanwhile; past limit it dumps the worker's state and fails.
func waitAllArrived(t *testing.T, w *supervised, b *broker, conn *pgx.Conn, wl workload, limit time.Duration, when string) {
	t.Helper()
	wantRows, _, wantPills := wl.want()
	deadline := time.Now().Add(limit)
	for {
		w.check()
		n, _ := rowStats(t, conn)
		if n >= wantRows && len(poisonInDLQ(b)) >= wantPills {
			// Through brokers just restarted a read can fail (EOF): read again.
			offs, err := tryCommitted(b, "test.orders", "orders")
			if err == nil && sumOffsets(offs) == int64(wl.total) {
				return
			}
		}
		if time.Now().After(deadline) {
			w.dump("%s%d of %d rows, %d of %d pills dead-lettered, commits %v after %v", when, n, wantRows, len(poisonInDLQ(b)), wantPills, b.committed("test.orders"), limit)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// rowStats returns the row count and sum of n in orders.
func rowStats(t *testing.T, conn *pgx.Conn) (int, int64) {
	t.Helper()
	var n int
	var sum *int64
	if err := conn.QueryRow(context.Background(), "SELECT count(*), sum((payload->>'n')::bigint) FROM orders").Scan(&n, &sum); err != nil {
		t.Fatal(err)
	}
	if sum == nil {
		return n, 0
	}
	return n, *sum
}

// rowIDs is the set of ids in orders.
func rowIDs(t *testing.T, conn *pgx.Conn) map[string]bool {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT id FROM orders")
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	var id string
	if _, err := pgx.ForEachRow(rows, []any{&id}, func() error { ids[id] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	return ids
}

// supervised runs the worker binary like a kubelet would: restarted if it exits.
// A worker that exits on its own during a broker failure is reported.
type supervised struct {
	t      *testing.T
	proc   *workerProcess
	port   int32
	cmd    *exec.Cmd
	exited chan error
	done   chan struct{} // closed when cmd has exited
	exits  int
}

func supervise(t *testing.T, proc *workerProcess, port int32) *supervised {
	s := &supervised{t: t, proc: proc, port: port}
	s.start()
	// A test that fails half-way leaves no worker behind.
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	})
	return s
}

func (s *supervised) start() {
	s.cmd = s.proc.start()
	s.exited, s.done = make(chan error, 1), make(chan struct{})
	cmd, exited, done := s.cmd, s.exited, s.done
	go func() {
		exited <- cmd.Wait()
		close(done)
	}()
}

// check restarts the worker if it exited.
func (s *supervised) check() {
	select {
	case err := <-s.exited:
		s.exits++
		s.t.Errorf("the worker exited on its own (%v); restarting it\n%s", err, tail(s.proc.log(), 3000))
		s.start()
	default:
	}
}

func (s *supervised) metrics() string {
	return scrapeAll(fmt.Sprintf("http://127.0.0.1:%d/metrics", s.port))
}

// metric reads one of the worker's own samples (pipeline "orders").
func (s *supervised) metric(body, name, labels string) float64 {
	if labels != "" {
		labels += ","
	}
	return sampleValue(body, fmt.Sprintf(`%s{%spipeline="orders"} `, name, labels))
}

// stop sends SIGTERM and expects a clean exit.
func (s *supervised) stop() {
	s.t.Helper()
	waitHealthy(s.t, s.port) // its SIGTERM handler is installed
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Fatal(err)
	}
	select {
	case err := <-s.exited:
		if err != nil {
			s.t.Errorf("the worker did not exit cleanly on SIGTERM: %v\n%s", err, tail(s.proc.log(), 3000))
		}
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		s.t.Errorf("the worker did not exit within 30s of SIGTERM")
	}
}

// dump fails the test with the worker's metrics and log tail after a SIGQUIT
// goroutine dump.
func (s *supervised) dump(format string, args ...any) {
	s.t.Helper()
	metrics := scrape(fmt.Sprintf("http://127.0.0.1:%d/metrics", s.port))
	_ = s.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case err := <-s.exited:
		s.t.Logf("the worker after SIGQUIT: %v", err)
	case <-time.After(10 * time.Second):
	}
	kept := filepath.Join(os.TempDir(), fmt.Sprintf("sluice-brokerfailure-%d.log", time.Now().UnixNano()))
	_ = os.WriteFile(kept, s.proc.log(), 0o644)
	s.t.Fatalf(format+"\nworker metrics:\n%s\nfull worker log: %s\nlog tail:\n%s", append(args, metrics, kept, tail(s.proc.log(), 4000))...)
}

// tryCommitted is the group's committed offsets of topic (as the test names
// both), or an error: with two brokers down a request may fail.
// sumOffsets adds up tryCommitted's offsets.
func sumOffsets(offs map[int32]int64) int64 {
	var n int64
	for _, o := range offs {
		n += o
	}
	return n
}

func tryCommitted(b *broker, group, topic string) (map[int32]int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	offs, err := b.admin.FetchOffsets(ctx, b.name(group))
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	for p, o := range offs[b.name(topic)] {
		if o.Err != nil {
			return nil, o.Err
		}
		out[p] = o.At
	}
	return out, nil
}

// tryValues is the set of values in topic (as the test names it), or an error.
func tryValues(b *broker, topic string) (map[string]bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	topic = b.name(topic)
	ends, err := b.admin.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	if err := ends.Error(); err != nil {
		return nil, err
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	set := map[string]bool{}
	if len(want) == 0 {
		return set, nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.seeds...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("reading %s: %w (missing %v)", topic, err, want)
		}
		fs.EachRecord(func(r *kgo.Record) {
			set[string(r.Value)] = true
			if r.Offset+1 >= want[r.Partition] {
				delete(want, r.Partition)
			}
		})
	}
	return set, nil
}

// otherNodes returns the node ids 0..2 except those given.
func otherNodes(except ...int32) []int {
	var out []int
	for i := range 3 {
		if !slices.Contains(except, int32(i)) {
			out = append(out, i)
		}
	}
	return out
}

// TestBrokerFailureLeaderKilledWhileConsumingAndParking SIGKILLs partition
// leaders while the worker consumes, writes to PostgreSQL and parks records in
// retry and dead-letter topics: first the leader of a source partition, then
// the leader of a retry-topic partition (and with it, likely, group and
// partition leaderships of other topics). Each node comes back after a few
// seconds. Afterwards every good record is in PostgreSQL exactly once, every
// poison pill is in the dead-letter topic, no good record was dead-lettered,
// and every topic's offsets are committed to the end.
func TestBrokerFailureLeaderKilledWhileConsumingAndParking(t *testing.T) {
	b, ctl := newFailureBroker(t)
	b.createTopicsWith(3, failureTopics, allTopics...)
	dsnFile, conn := ordersDB(t)
	wl := workload{total: 20_000, poisonEvery: 500, flakyEvery: 1000}
	wl.createSequences(t, conn)
	wantRows, wantSum, _ := wl.want()
	cfg := failureConfig(t, b)
	cfg.Sink = workerconfig.Sink{Postgres: &workerconfig.PostgresSink{DSNFile: dsnFile, Table: "orders", KeyColumn: "id", PayloadColumn: "payload"}}
	w := supervise(t, newWorkerProcess(t, cfg), cfg.Server.Port)
	waitHealthy(t, cfg.Server.Port)

	// Paced over ~25 s, so that the second kill (after the first node's
	// restart, which took 15 s on a loaded machine) still lands mid-flow: at
	// 5,000 records/s the flow had ended by then and the test failed.
	produced := produceInBackground(b, wl.total, 200, 250*time.Millisecond, wl.value)
	start := time.Now()
	progress := func(what string, rows int) {
		eventually(t, 60*time.Second, what, func() bool { w.check(); n, _ := rowStats(t, conn); return n >= rows })
	}
	kill := func(topic string, partition int32) {
		leader, err := ctl.LeaderOf(topic, partition)
		if err != nil {
			t.Fatal(err)
		}
		rows, _ := rowStats(t, conn)
		t.Logf("%v: SIGKILL node %d, leader of %s[%d] (%d rows so far)", time.Since(start).Round(time.Millisecond), leader, topic, partition, rows)
		if rows >= wantRows {
			t.Errorf("the kill of node %d came after the flow ended", leader)
		}
		ctl.Kill(int(leader))
		time.Sleep(2 * time.Second) // the worker runs through the election (~3 s fencing)
		w.check()
		ctl.Start(int(leader)) // ~6 s: refused until the old session has expired
		t.Logf("%v: node %d is back", time.Since(start).Round(time.Millisecond), leader)
	}

	progress("the worker writes rows", 1000)
	kill(b.name("orders"), 0)
	progress("the worker writes rows after the first kill", 6000)
	eventually(t, 60*time.Second, "records parked in retry 1", func() bool {
		w.check()
		return w.metric(w.metrics(), metricRecords, `outcome="retried"`) > 0
	})
	kill(b.name("orders.retry.1"), 0)
	<-produced
	t.Logf("%v: all %d records produced", time.Since(start).Round(time.Millisecond), wl.total)

	waitAllArrived(t, w, b, conn, wl, 180*time.Second, "")
	t.Logf("%v: everything arrived", time.Since(start).Round(time.Millisecond))
	metrics := w.metrics()
	eventually(t, 30*time.Second, "the retry topics drained and committed", func() bool {
		c := b.committed("test.orders")
		for _, topic := range allTopics[1:4] {
			if sumCommitted(c, topic) != int64(len(b.readAll(topic))) {
				return false
			}
		}
		return true
	})
	w.stop()

	n, sum := rowStats(t, conn)
	if n != wantRows || sum != wantSum {
		t.Errorf("PostgreSQL holds %d rows (sum %d), want %d (sum %d): every good record exactly once", n, sum, wantRows, wantSum)
	}
	dlq := poisonInDLQ(b)
	for i := range wl.total {
		v := string(wl.value(i))
		if wl.poison(i) != dlq[v] {
			t.Errorf("record %d (%s): in the dead-letter topic = %v", i, v, dlq[v])
		}
	}
	retried := w.metric(metrics, metricRecords, `outcome="retried"`)
	if retried == 0 {
		t.Error("no record was parked in a retry topic: the test did not exercise retries")
	}
	t.Logf("%d rows, %d pills dead-lettered, %v records parked for retry, %v park failures, %v producer resets; worker exits: %d",
		n, len(dlq), retried, w.metric(metrics, metricParkFailures, ""), w.metric(metrics, metricProducerResets, ""), w.exits)
}

// TestBrokerFailureTwoBrokersDownPausesWithoutLoss stops two of the three
// brokers (SIGTERM, one after the other: each controlled shutdown leaves the
// ISR while the controller quorum still has a majority), so the last one leads
// every partition with ISR [itself], below min.insync.replicas 2: every acks=all
// produce gets NOT_ENOUGH_REPLICAS. The worker keeps writing good records to
// PostgreSQL, but cannot park a poison pill; it must not commit past it
// (nothing dropped silently), pause that partition and count the failed
// parks, and recover by itself when the brokers return: afterwards every
// record arrived exactly once.
func TestBrokerFailureTwoBrokersDownPausesWithoutLoss(t *testing.T) {
	ctx := context.Background()
	b, ctl := newFailureBroker(t)
	b.createTopicsWith(3, failureTopics, allTopics...)
	dsnFile, conn := ordersDB(t)
	wl := workload{total: 3000, poisonEvery: 60}
	wantRows, wantSum, _ := wl.want()
	b.produce("orders", 0, wl.total, func(i int, r *kgo.Record) { r.Value = wl.value(i) })
	// Where each record is: poison pills by partition and offset.
	type at struct {
		p int32
		o int64
	}
	records := map[at]string{}
	for _, r := range b.readAll("orders") {
		records[at{r.Partition, r.Offset}] = string(r.Value)
	}

	cfg := failureConfig(t, b)
	cfg.Sink = workerconfig.Sink{Postgres: &workerconfig.PostgresSink{DSNFile: dsnFile, Table: "orders", KeyColumn: "id", PayloadColumn: "payload"}}
	cfg.RateLimit.RecordsPerSecond = 150 // ~20 s for the backlog: the outage comes in the middle
	w := supervise(t, newWorkerProcess(t, cfg), cfg.Server.Port)
	eventually(t, 60*time.Second, "the worker dead-letters a pill", func() bool { w.check(); return len(poisonInDLQ(b)) >= 1 })

	// Keep the active controller: the other two leave one after the other.
	controller, err := ctl.ActiveController()
	if err != nil {
		t.Fatal(err)
	}
	stop := otherNodes(controller)
	start := time.Now()
	for _, i := range stop {
		ctl.Stop(i)
	}
	t.Logf("nodes %v stopped in %v; node %d is alone", stop, time.Since(start).Round(time.Millisecond), controller)

	// The cluster refuses acks=all writes: a producer that does not retry sees
	// NOT_ENOUGH_REPLICAS itself (kgo retries it until the delivery timeout and
	// then reports only a timeout). Not idempotent: without a controller quorum
	// a new producer gets no producer ID.
	probe := b.kafka.Client(t, kgo.DisableIdempotentWrite(), kgo.RecordRetries(1), kgo.RecordDeliveryTimeout(5*time.Second))
	eventually(t, 20*time.Second, "a produce fails with NOT_ENOUGH_REPLICAS", func() bool {
		err := probe.ProduceSync(ctx, &kgo.Record{Topic: b.name("orders.dlq"), Value: []byte("probe")}).FirstErr()
		if err != nil {
			t.Logf("probe: %v", err)
		}
		return errors.Is(err, kerr.NotEnoughReplicas) || errors.Is(err, kerr.NotEnoughReplicasAfterAppend)
	})

	// The outage: sample the group's commits, PostgreSQL and the dead-letter
	// topic. Below every committed offset, each record must be accounted for:
	// a good one in PostgreSQL, a pill in the dead-letter topic.
	before := w.metrics()
	failuresBefore := w.metric(before, metricParkFailures, "")
	maxPaused := 0.0
	var commitsAt []map[int32]int64
	var lastDLQ map[string]bool
	outageEnd := time.Now().Add(15 * time.Second)
	for time.Now().Before(outageEnd) {
		w.check()
		time.Sleep(500 * time.Millisecond)
		// Commits first: PostgreSQL and the DLQ only grow.
		committed, err := tryCommitted(b, "test.orders", "orders")
		if err != nil {
			t.Logf("reading the group's commits during the outage: %v", err)
			continue
		}
		dlq, err := tryValues(b, "orders.dlq")
		if err != nil {
			t.Logf("reading the dead-letter topic during the outage: %v", err)
			continue
		}
		ids := rowIDs(t, conn)
		for p, c := range committed {
			for o := range c {
				v, ok := records[at{p, o}]
				switch {
				case !ok:
					t.Fatalf("committed %d on partition %d: record %d unknown", c, p, o)
				case strings.HasPrefix(v, "poison-"):
					if !dlq[v] {
						t.Fatalf("committed %d on partition %d, past %s (offset %d), which is not in the dead-letter topic: dropped", c, p, v, o)
					}
				default:
					id := strings.SplitN(strings.TrimPrefix(v, `{"id":"`), `"`, 2)[0]
					if !ids[id] {
						t.Fatalf("committed %d on partition %d, past %s (offset %d), which is not in PostgreSQL: lost", c, p, id, o)
					}
				}
			}
		}
		commitsAt, lastDLQ = append(commitsAt, committed), dlq
		maxPaused = max(maxPaused, w.metric(w.metrics(), metricPaused, ""))
	}
	during := w.metrics()
	parkFailures := w.metric(during, metricParkFailures, "") - failuresBefore
	t.Logf("during the outage: %v park failures, up to %v paused partitions, %v producer resets; commits %v → %v",
		parkFailures, maxPaused, w.metric(during, metricProducerResets, ""), commitsAt[0], commitsAt[len(commitsAt)-1])
	if parkFailures < 1 {
		t.Errorf("no failed park counted (%s) while the dead-letter topic refused writes", metricParkFailures)
	}
	if maxPaused < 1 {
		t.Errorf("no partition paused (%s) while pills could not be parked", metricPaused)
	}
	if len(commitsAt) < 5 {
		t.Fatalf("only %d samples of the group's commits during the outage", len(commitsAt))
	}
	// The worker stopped committing where it could not park: in some partition
	// the commit sits at the first pill that is not in the dead-letter topic
	// (and by the check above, no commit went past one).
	last, blocked := commitsAt[len(commitsAt)-1], []string{}
	for p, c := range last {
		if v := records[at{p, c}]; strings.HasPrefix(v, "poison-") && !lastDLQ[v] {
			blocked = append(blocked, fmt.Sprintf("partition %d at %s (offset %d)", p, v, c))
		}
	}
	if len(blocked) == 0 {
		t.Errorf("at the end of the outage no partition's commit waits at an unparked pill: commits %v", last)
	}
	t.Logf("blocked: %v", blocked)
	n, _ := rowStats(t, conn)
	if n >= wantRows {
		t.Errorf("all %d rows written during the outage: the test's outage came too late", n)
	}

	// The brokers return; the worker carries on by itself.
	for _, i := range stop {
		ctl.Start(i)
	}
	back := time.Now()
	t.Logf("nodes %v back after %v", stop, back.Sub(start).Round(time.Millisecond))
	waitAllArrived(t, w, b, conn, wl, 120*time.Second, "after the brokers returned: ")
	t.Logf("recovered: everything arrived %v after the brokers returned", time.Since(back).Round(time.Millisecond))
	eventually(t, 10*time.Second, "no partition paused", func() bool { return w.metric(w.metrics(), metricPaused, "") == 0 })
	w.stop()

	n, sum := rowStats(t, conn)
	if n != wantRows || sum != wantSum {
		t.Errorf("PostgreSQL holds %d rows (sum %d), want %d (sum %d)", n, sum, wantRows, wantSum)
	}
	dlq := poisonInDLQ(b)
	for i := range wl.total {
		if v := string(wl.value(i)); wl.poison(i) != dlq[v] {
			t.Errorf("record %d (%s): in the dead-letter topic = %v", i, v, dlq[v])
		}
	}
}

// TestBrokerFailureExactlyOnceKafkaSinkAcrossBrokerRestarts copies records into
// another topic inside Kafka transactions while brokers restart under it: the
// leader of an output partition stops gracefully and comes back, then the
// leader of a source partition is SIGKILLed and comes back (each may also be a
// transaction or group coordinator). A read_committed reader then sees every
// source record exactly once, in the output or, for a pill, the dead-letter
// topic.
func TestBrokerFailureExactlyOnceKafkaSinkAcrossBrokerRestarts(t *testing.T) {
	b, ctl := newFailureBroker(t)
	b.createTopicsWith(3, failureTopics, "orders", "orders.dlq", "orders-out")
	cfg := failureConfig(t, b)
	cfg.Sink = workerconfig.Sink{Kafka: &workerconfig.KafkaSink{Topic: b.name("orders-out")}}
	cfg.Delivery.Semantics = "ExactlyOnce"
	cfg.RateLimit.RecordsPerSecond = 400 // ~25 s of flow: both restarts happen in the middle of it
	w := supervise(t, newWorkerProcess(t, cfg), cfg.Server.Port)
	waitHealthy(t, cfg.Server.Port)

	const total, poisonEvery = 10_000, 500
	value := func(i int) []byte { return poisonOr(i, poisonEvery, fmt.Sprintf(`{"id":"r-%d"}`, i)) }
	produced := produceInBackground(b, total, 500, 100*time.Millisecond, value)
	start := time.Now()
	// The group's commits, read through brokers that restart: a read that
	// fails (EOF from a node just killed, the CI saw it) keeps the last value.
	var lastCommitted int64
	committed := func() int64 {
		offs, err := tryCommitted(b, "test.orders", "orders")
		if err != nil {
			t.Logf("reading the group's commits: %v (keeping %d)", err, lastCommitted)
			return lastCommitted
		}
		lastCommitted = sumOffsets(offs)
		return lastCommitted
	}
	restart := func(topic string, partition int32, kill bool) {
		eventually(t, 60*time.Second, "the worker commits", func() bool { w.check(); return committed() > 0 })
		leader, err := ctl.LeaderOf(topic, partition)
		if err != nil {
			t.Fatal(err)
		}
		done := committed()
		t.Logf("%v: %s node %d, leader of %s[%d] (%d committed)", time.Since(start).Round(time.Millisecond),
			map[bool]string{true: "SIGKILL", false: "SIGTERM"}[kill], leader, topic, partition, done)
		if done >= total {
			t.Errorf("the restart of node %d came after the flow ended", leader)
		}
		if kill {
			ctl.Kill(int(leader))
			time.Sleep(2 * time.Second)
		} else {
			ctl.Stop(int(leader))
			time.Sleep(3 * time.Second)
		}
		w.check()
		ctl.Start(int(leader))
		t.Logf("%v: node %d is back (%d committed)", time.Since(start).Round(time.Millisecond), leader, committed())
	}
	restart(b.name("orders-out"), 0, false)
	restart(b.name("orders"), 1, true)
	<-produced

	deadline := time.Now().Add(180 * time.Second)
	for committed() < total {
		w.check()
		if time.Now().After(deadline) {
			w.dump("the group committed %d of %d in 180s", committed(), total)
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Logf("%v: everything committed", time.Since(start).Round(time.Millisecond))
	metrics := w.metrics()
	w.stop()

	distinct := expectEachOnceReadCommitted(t, b, total, value)
	t.Logf("%d records, each exactly once; %v duplicates skipped, %v producer resets",
		distinct, w.metric(metrics, metricRecords, `outcome="duplicate"`), w.metric(metrics, metricProducerResets, ""))
}
