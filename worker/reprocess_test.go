package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/internal/replay"
	"github.com/sluice-dev/sluice/internal/workerconfig"
)

// deadLetters writes n dead letters of source records orders[0] 0..n-1 to
// orders.dlq, as the worker writes them: the original value and Sluice's
// failure headers (class poison, "amount out of range"). Every badEvery-th
// one (if > 0) still holds a value the sink refuses (not JSON).
func deadLetters(t *testing.T, b *broker, n, badEvery int) (good, bad int) {
	t.Helper()
	now := time.Now()
	b.produce("orders.dlq", 0, n, func(i int, r *kgo.Record) {
		value := fmt.Appendf(nil, `{"id":"r-%d","n":%d}`, i, i)
		if badEvery > 0 && i%badEvery == badEvery-1 {
			value = fmt.Appendf(nil, "r-%d is not JSON", i)
		}
		orig := &kgo.Record{Topic: b.name("orders"), Partition: 0, Offset: int64(i), Key: r.Key, Value: value, Timestamp: now.Add(-time.Hour)}
		info, err := failureInfoOf(orig, 0)
		if err != nil {
			t.Fatal(err)
		}
		cp := failedCopy(orig, info, b.name("orders.dlq"), "poison", errors.New("amount out of range"), now, time.Time{})
		r.Value, r.Headers = cp.Value, cp.Headers
	})
	for i := range n {
		if badEvery > 0 && i%badEvery == badEvery-1 {
			bad++
		} else {
			good++
		}
	}
	return good, bad
}

// reprocessPlan is a plan that reads all of topic's partitions.
func reprocessPlan(t *testing.T, b *broker, topic, group string, sel replay.Selection, deadLetter bool) ReprocessPlan {
	t.Helper()
	ends, err := b.admin.ListEndOffsets(context.Background(), b.name(topic))
	if err != nil {
		t.Fatal(err)
	}
	plan := ReprocessPlan{Replay: "test/reprocess", Group: group, Select: sel, DeadLetter: deadLetter}
	ends.Each(func(o kadm.ListedOffset) {
		plan.Partitions = append(plan.Partitions, replay.Partition{Topic: o.Topic, Partition: o.Partition, Start: 0, End: o.Offset})
	})
	return plan
}

// sinkDB is postgresDB with its DSN in a file, as the sink reads it.
func sinkDB(t *testing.T) (string, *pgx.Conn) {
	t.Helper()
	dsn, conn := postgresDB(t)
	file := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(file, []byte(dsn), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, conn
}

func postgresSinkConfig(b *broker, dsnFile string) *workerconfig.Config {
	cfg := b.config()
	cfg.Sink = workerconfig.Sink{Postgres: &workerconfig.PostgresSink{DSNFile: dsnFile, Table: "orders", KeyColumn: "id", PayloadColumn: "payload"}}
	return cfg
}

func reprocessWorker(t *testing.T, cfg *workerconfig.Config) *Worker {
	t.Helper()
	w, err := New(Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// TestReprocessWritesTheSelectedDeadLettersUnderTheirOriginalKeys: the dead
// letters of poison class go to the sink once each, keyed by their source
// coordinates (the default idempotency key, the same as the first time), the
// ones that still fail are counted and stay in the DLQ (no second copy), and
// a second run of the same replay resumes at the end: nothing written twice,
// the same counts.
func TestReprocessWritesTheSelectedDeadLettersUnderTheirOriginalKeys(t *testing.T) {
	b := newBroker(t)
	b.createTopics(2, allTopics...)
	dsnFile, conn := sinkDB(t)
	good, bad := deadLetters(t, b, 200, 20)
	// A transient dead letter the selection leaves out.
	b.produce("orders.dlq", 200, 201, func(i int, r *kgo.Record) {
		r.Headers = []kgo.RecordHeader{{Key: HeaderErrorClass, Value: []byte("transient")}}
	})
	plan := reprocessPlan(t, b, "orders.dlq", b.group+".reprocess-a", replay.Selection{Classes: []string{"poison"}}, false)

	for run := range 2 {
		res, err := reprocessWorker(t, postgresSinkConfig(b, dsnFile)).Reprocess(context.Background(), plan)
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		if res.Done != int64(good) || res.Failed != int64(bad) {
			t.Errorf("run %d: %+v, want done %d, failed %d", run, res, good, bad)
		}
	}
	ids := rowIDs(t, conn)
	if len(ids) != good {
		t.Errorf("%d rows, want %d", len(ids), good)
	}
	for i := range 200 {
		key := fmt.Sprintf("%s/0/%d", b.name("orders"), i)
		if want := i%20 != 19; ids[key] != want {
			t.Errorf("row %s present %v, want %v (the source coordinates are the key)", key, ids[key], want)
		}
	}
	if dlq := b.readAll("orders.dlq"); len(dlq) != 201 {
		t.Errorf("DLQ holds %d records, want the 201 it had: a dead letter that fails again is not copied again", len(dlq))
	}
}

// TestReprocessOfTheSourceDeadLettersWhatFailsAgain: reading the source topic,
// a record that fails is copied to the dead-letter topic with its error
// before the position moves past it.
func TestReprocessOfTheSourceDeadLettersWhatFailsAgain(t *testing.T) {
	b := newBroker(t)
	b.createTopics(1, allTopics...)
	dsnFile, conn := sinkDB(t)
	b.produce("orders", 0, 50, func(i int, r *kgo.Record) {
		r.Value = fmt.Appendf(nil, `{"id":"r-%d","n":%d}`, i, i)
		if i%10 == 3 {
			r.Value = []byte("not json")
		}
	})
	cfg := postgresSinkConfig(b, dsnFile)
	cfg.IdempotencyKey = &workerconfig.IdempotencyKey{JSONField: "id"}
	plan := reprocessPlan(t, b, "orders", b.group+".reprocess-b", replay.Selection{}, true)
	res, err := reprocessWorker(t, cfg).Reprocess(context.Background(), plan)
	if err != nil {
		t.Fatal(err)
	}
	if res.Done != 45 || res.Failed != 5 {
		t.Errorf("%+v, want done 45, failed 5", res)
	}
	if n := len(rowIDs(t, conn)); n != 45 {
		t.Errorf("%d rows, want 45", n)
	}
	dlq := b.readAll("orders.dlq")
	if len(dlq) != 5 {
		t.Fatalf("DLQ holds %d records, want the 5 that failed", len(dlq))
	}
	if h := headerMap(dlq[0]); h[HeaderErrorClass] != "poison" || h[HeaderOriginalOffset] != "3" {
		t.Errorf("dead letter headers %v, want class poison, original offset 3", h)
	}
}

func TestReprocessRefusesAnExactlyOncePipeline(t *testing.T) {
	b := newBroker(t)
	b.createTopics(1, allTopics...)
	_, dsnFile, _ := eventsDB(t)
	cfg := exactlyOncePostgres(b.config(), dsnFile)
	_, err := reprocessWorker(t, cfg).Reprocess(context.Background(), reprocessPlan(t, b, "orders", b.group+".reprocess-c", replay.Selection{}, true))
	if err == nil || !strings.Contains(err.Error(), "Rewind") {
		t.Fatalf("%v, want a refusal that points to mode Rewind", err)
	}
}

// TestReprocessSurvivesKills: the worker binary runs a 20,000-record plan at
// 4,000 records/s and is SIGKILLed four times in a sink call (its insert held
// in PostgreSQL, then terminated or let through after the death); each run
// resumes from the position it committed. At the end every selected record
// is a row, the sink saw each at most a batch's worth of times more than
// once (the delivery log), and the result written to the termination log
// counts each record once.
func TestReprocessSurvivesKills(t *testing.T) {
	b := newBroker(t)
	b.createTopics(4, allTopics...)
	db := newDeliveryDB(t, "orders")
	const total = 20_000
	b.produce("orders", 0, total, func(i int, r *kgo.Record) {
		r.Partition = int32(i % 4)
		r.Value = fmt.Appendf(nil, `{"id":"r-%d","n":%d}`, i, i)
	})
	cfg := crashConfig(t, b)
	cfg.Sink = workerconfig.Sink{Postgres: &workerconfig.PostgresSink{Table: "orders", KeyColumn: "id", PayloadColumn: "payload"}}
	dsn := dsnFile(t)
	db.writeDSN(dsn, "reprocess-0")
	cfg.Sink.Postgres.DSNFile = dsn
	plan := reprocessPlan(t, b, "orders", b.group+".reprocess-d", replay.Selection{}, true)
	plan.RateLimit = 4000
	planJSON, err := json.Marshal(plan)
	if err != nil {
		t.Fatal(err)
	}
	result := filepath.Join(t.TempDir(), "termination-log")
	p := newWorkerProcess(t, cfg)
	p.env = []string{ReprocessPlanEnv + "=" + string(planJSON), TerminationLogEnv + "=" + result}

	position := func() int64 {
		offs, err := b.admin.FetchOffsets(context.Background(), plan.Group)
		if err != nil {
			return 0 // no commit yet (kfake: GROUP_ID_NOT_FOUND)
		}
		var n int64
		offs.Each(func(o kadm.OffsetResponse) { n += o.At })
		return n
	}
	for kill := range 4 {
		before := position()
		cmd := p.start()
		eventually(t, 30*time.Second, "the run moved the position", func() bool { return position() > before })
		// Kill it in a sink call: its next insert waits in PostgreSQL, then
		// either never happens or commits after the death.
		db.hold("reprocess-0")
		pids := db.waitHeld("reprocess-0", 10*time.Second)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		terminate := kill%2 == 0
		db.endHold("reprocess-0", pids, terminate)
		at := position()
		t.Logf("kill %d: position %d of %d, insert held %v (then terminated: %v)", kill+1, at, total, pids, terminate)
		if len(pids) == 0 || at >= total {
			t.Fatalf("kill %d landed outside a sink call", kill+1)
		}
	}
	cmd := p.start()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the last run: %v\n%s", err, p.log())
	}
	var res ReprocessResult
	data, err := os.ReadFile(result)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &res); err != nil || res.Done != total || res.Failed != 0 {
		t.Fatalf("result %s (%v), want done %d, failed 0", data, err, total)
	}
	c := db.counts()
	if len(c.kept) != total {
		t.Errorf("%d records took effect, want %d", len(c.kept), total)
	}
	redelivered := 0
	for _, n := range c.saw {
		redelivered += n - 1
	}
	for id, n := range c.kept {
		if n != 1 {
			t.Errorf("%s took effect %d times", id, n)
		}
	}
	t.Logf("redeliveries after 4 kills: %d (at most 4 × %d; the let-through inserts are read again)", redelivered, reprocessBatch)
	if redelivered > 4*reprocessBatch {
		t.Errorf("%d redeliveries: a run did not resume from the committed position", redelivered)
	}
}

// TestReprocessHoldsTheRecordsWhileTheSinkIsDown: the table is locked for a
// while, longer than the processing timeout (every batch fails transiently,
// as a whole): the run holds the records as an open circuit does instead of
// spending their attempts, and writes every one once the lock is gone; none
// counts as failed.
func TestReprocessHoldsTheRecordsWhileTheSinkIsDown(t *testing.T) {
	b := newBroker(t)
	b.createTopics(1, allTopics...)
	dsnFile, conn := sinkDB(t)
	b.produce("orders", 0, 50, func(i int, r *kgo.Record) { r.Value = fmt.Appendf(nil, `{"id":"r-%d","n":%d}`, i, i) })
	cfg := postgresSinkConfig(b, dsnFile)
	cfg.CircuitBreaker.OpenDuration = metav1.Duration{Duration: 300 * time.Millisecond}
	cfg.Delivery.ProcessingTimeout = metav1.Duration{Duration: 200 * time.Millisecond}
	w := reprocessWorker(t, cfg)
	ctx := context.Background()
	lock, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Exec(ctx, "LOCK TABLE orders IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	done := make(chan ReprocessResult, 1)
	go func() {
		res, err := w.Reprocess(ctx, reprocessPlan(t, b, "orders", b.group+".reprocess-e", replay.Selection{}, true))
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	time.Sleep(2 * time.Second) // several backoffs' worth of failed batches
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-done:
		if res.Done != 50 || res.Failed != 0 {
			t.Errorf("%+v, want all 50 done, none failed: the sink was down, not the records", res)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the run did not finish after the table came back")
	}
	if dlq := b.readAll("orders.dlq"); len(dlq) != 0 {
		t.Errorf("%d records dead-lettered while the sink was down", len(dlq))
	}
}

// TestReprocessEndsAPartitionWhoseRecordsWereDeleted: the records left to
// read were deleted after the snapshot (retention, DeleteRecords): the run
// ends that partition instead of waiting for a record that can't come.
func TestReprocessEndsAPartitionWhoseRecordsWereDeleted(t *testing.T) {
	b := newBroker(t)
	b.createTopics(1, allTopics...)
	deadLetters(t, b, 20, 0)
	plan := reprocessPlan(t, b, "orders.dlq", b.group+".reprocess-f", replay.Selection{}, false)
	del := kadm.Offsets{}
	del.AddOffset(b.name("orders.dlq"), 0, 20, -1)
	if _, err := b.admin.DeleteRecords(context.Background(), del); err != nil {
		t.Fatal(err)
	}
	dsnFile, _ := ordersDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := reprocessWorker(t, postgresSinkConfig(b, dsnFile)).Reprocess(ctx, plan)
	if err != nil {
		t.Fatalf("%v: the run waited for deleted records", err)
	}
	if res.Done != 0 || res.Failed != 0 {
		t.Errorf("%+v, want nothing done or failed", res)
	}
}
