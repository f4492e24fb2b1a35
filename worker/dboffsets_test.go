package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/internal/workerconfig"
	"github.com/sluice-dev/sluice/worker/sink"
)

// eventsDB gives a test a database with table events(id text, payload jsonb)
// WITHOUT a unique constraint on id, so a record written twice is two rows:
// the exactly-once tests don't lean on ON CONFLICT for their proof. A record
// whose payload names a sequence in "flaky" fails transiently (SQLSTATE 40001,
// which fails its statement; the sink then writes the batch row by row, so it
// fails alone) on its first two inserts; the test creates the sequences. It returns the DSN, its file and a connection.
func eventsDB(t *testing.T) (string, string, *pgx.Conn) {
	t.Helper()
	dsn, conn := postgresDB(t)
	if _, err := conn.Exec(context.Background(), `
		CREATE TABLE events (id text NOT NULL, payload jsonb NOT NULL);
		CREATE FUNCTION flaky() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.payload ? 'flaky' AND nextval(NEW.payload->>'flaky') <= 2 THEN
				RAISE EXCEPTION 'record % is flaky', NEW.id USING ERRCODE = '40001';
			END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER flaky BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION flaky();`); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(file, []byte(dsn), 0o600); err != nil {
		t.Fatal(err)
	}
	return dsn, file, conn
}

func exactlyOncePostgres(cfg *workerconfig.Config, dsnFile string) *workerconfig.Config {
	cfg.Delivery.Semantics = "ExactlyOnce"
	cfg.IdempotencyKey = &workerconfig.IdempotencyKey{JSONField: "id"}
	cfg.Sink = workerconfig.Sink{Postgres: &workerconfig.PostgresSink{DSNFile: dsnFile, Table: "events", KeyColumn: "id", PayloadColumn: "payload"}}
	return cfg
}

// eventCounts is how many rows each id has, with their total and sum of n.
type eventCounts struct {
	perID     map[string]int
	rows, sum int64
}

func countEvents(t *testing.T, conn *pgx.Conn) eventCounts {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT id, count(*), sum((payload->>'n')::bigint) FROM events GROUP BY id")
	if err != nil {
		t.Fatal(err)
	}
	c := eventCounts{perID: map[string]int{}}
	var id string
	var n, sum int64
	if _, err := pgx.ForEachRow(rows, []any{&id, &n, &sum}, func() error {
		c.perID[id] = int(n)
		c.rows += n
		c.sum += sum
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return c
}

// lowestOffsetSink is the real postgres sink, noting the lowest source offset
// it was asked to write per partition.
type lowestOffsetSink struct {
	*sink.Postgres
	topic  string
	mu     sync.Mutex
	lowest map[int32]int64
}

func (s *lowestOffsetSink) Apply(ctx context.Context, group string, recs []*sink.Record) sink.ApplyResult {
	s.mu.Lock()
	if r := recs[0].Rec; r.Topic == s.topic {
		if low, ok := s.lowest[r.Partition]; !ok || r.Offset < low {
			s.lowest[r.Partition] = r.Offset
		}
	}
	s.mu.Unlock()
	return s.Postgres.Apply(ctx, group, recs)
}

func TestExactlyOncePostgresResumesFromTheDatabaseNotFromKafka(t *testing.T) {
	ctx := context.Background()
	b := newBroker(t)
	b.createTopics(2, allTopics...)
	dsn, dsnFile, conn := eventsDB(t)
	cfg := exactlyOncePostgres(b.config(), dsnFile)
	value := func(i int, r *kgo.Record) { r.Value = fmt.Appendf(nil, `{"id":"r-%d","n":%d}`, i, i) }
	b.produce("orders", 0, 100, value)

	first := startWorker(t, cfg, nil)
	eventually(t, 20*time.Second, "100 rows and the Kafka commit", func() bool {
		return countEvents(t, conn).rows == 100 && sumCommitted(b.committed("test.orders"), "orders") == 100
	})
	first.stop(t)

	// Kafka's commit goes back to 0 (lost, or an operator reset the group);
	// the database still says 100.
	resp, err := b.admin.CommitOffsets(ctx, b.name("test.orders"), kadm.Offsets{b.name("orders"): {
		0: {Topic: b.name("orders"), Partition: 0, At: 0, LeaderEpoch: -1},
		1: {Topic: b.name("orders"), Partition: 1, At: 0, LeaderEpoch: -1},
	}})
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	ends, err := b.admin.ListEndOffsets(ctx, b.name("orders"))
	if err != nil {
		t.Fatal(err)
	}
	b.produce("orders", 100, 150, value)

	pgSink, err := sink.NewPostgres(ctx, sink.PostgresOptions{DSN: dsn, Table: "events", KeyColumn: "id", PayloadColumn: "payload", ExactlyOnce: true})
	if err != nil {
		t.Fatal(err)
	}
	watched := &lowestOffsetSink{Postgres: pgSink, topic: b.name("orders"), lowest: map[int32]int64{}}
	second := startWorker(t, cfg, watched)
	eventually(t, 20*time.Second, "150 rows and the Kafka commit caught up", func() bool {
		return countEvents(t, conn).rows >= 150 && sumCommitted(b.committed("test.orders"), "orders") == 150
	})
	second.stop(t)

	got := countEvents(t, conn)
	for i := range 150 {
		if n := got.perID[fmt.Sprintf("r-%d", i)]; n != 1 {
			t.Errorf("r-%d written %d times, want once", i, n)
		}
	}
	if got.rows != 150 {
		t.Errorf("%d rows, want 150", got.rows)
	}
	// The restarted worker started where the database said, not at Kafka's 0.
	ends.Each(func(o kadm.ListedOffset) {
		if low, ok := watched.lowest[o.Partition]; ok && low < o.Offset {
			t.Errorf("orders[%d]: the restarted worker wrote from offset %d, below the stored %d", o.Partition, low, o.Offset)
		}
	})
	rows, err := conn.Query(ctx, "SELECT partition, next_offset FROM sluice_offsets WHERE consumer_group = $1 AND topic = $2", b.name("test.orders"), b.name("orders"))
	if err != nil {
		t.Fatal(err)
	}
	var storedSum, p, next int64
	if _, err := pgx.ForEachRow(rows, []any{&p, &next}, func() error { storedSum += next; return nil }); err != nil {
		t.Fatal(err)
	}
	if storedSum != 150 {
		t.Errorf("stored offsets of orders sum to %d, want 150", storedSum)
	}
}

func TestExactlyOncePostgresParksFailuresBeforeMovingTheOffset(t *testing.T) {
	ctx := context.Background()
	b := newBroker(t)
	b.createTopics(1, allTopics...)
	_, dsnFile, conn := eventsDB(t)
	// Starting at 0, the sequence lets record 3 fail three times: in its
	// batch, alone (the sink writes a refused batch row by row), and in the
	// first retry topic.
	if _, err := conn.Exec(ctx, "CREATE SEQUENCE flaky_3 MINVALUE 0 START 0"); err != nil {
		t.Fatal(err)
	}
	cfg := exactlyOncePostgres(b.config(), dsnFile)
	// Record 3 fails transiently, record 6 is not JSON: 3 goes through two
	// retry topics, 6 to the dead-letter topic, and the others are written
	// from the source topic.
	b.produce("orders", 0, 10, func(i int, r *kgo.Record) {
		switch i {
		case 3:
			r.Value = []byte(`{"id":"r-3","n":3,"flaky":"flaky_3"}`)
		case 6:
			r.Value = []byte("poison-6")
		default:
			r.Value = fmt.Appendf(nil, `{"id":"r-%d","n":%d}`, i, i)
		}
	})
	w := startWorker(t, cfg, nil)
	eventually(t, 30*time.Second, "9 rows and the pill in the DLQ", func() bool {
		return countEvents(t, conn).rows >= 9 && len(b.readAll("orders.dlq")) >= 1
	})
	eventually(t, 10*time.Second, "Kafka commits caught up", func() bool {
		c := b.committed("test.orders")
		return sumCommitted(c, "orders") == 10 && sumCommitted(c, "orders.retry.2") > 0
	})
	if n := counterValue(t, w.w, metricRecords, "outcome", outcomeRetried); n < 2 {
		t.Errorf("retried = %v, want at least 2 (record 3 at the source and in retry 1)", n)
	}
	w.stop(t)

	got := countEvents(t, conn)
	for i := range 10 {
		want := 1
		if i == 6 {
			want = 0
		}
		if n := got.perID[fmt.Sprintf("r-%d", i)]; n != want {
			t.Errorf("r-%d written %d times, want %d", i, n, want)
		}
	}
	if dlq := b.readAll("orders.dlq"); len(dlq) != 1 || string(dlq[0].Value) != "poison-6" {
		t.Errorf("DLQ = %d records, want poison-6 once", len(dlq))
	}
	var pending int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM sluice_retries WHERE NOT done").Scan(&pending); err != nil || pending != 0 {
		t.Errorf("%d retry markers not done (%v), want 0", pending, err)
	}
}

// flakyAdvance is the postgres sink whose first Advance that moves past a
// dead-lettered record fails: before the database saw it (lostCall) or after
// it took effect, its answer lost (the connection dropped under the commit).
type flakyAdvance struct {
	sink.Transactional
	lostCall bool
	failed   atomic.Int32
}

func (f *flakyAdvance) Advance(ctx context.Context, group, topic string, partition int32, from, next int64, deadLettered []sink.Origin) error {
	if len(deadLettered) == 0 || !f.failed.CompareAndSwap(0, 1) {
		return f.Transactional.Advance(ctx, group, topic, partition, from, next, deadLettered)
	}
	if !f.lostCall {
		if err := f.Transactional.Advance(ctx, group, topic, partition, from, next, deadLettered); err != nil {
			return err
		}
	}
	return errors.New("FATAL: terminating connection due to administrator command (SQLSTATE 57P01)")
}

// TestExactlyOncePostgresDeadLettersOnceWhenStoringTheOffsetFails: the
// database fails the offset store after a pill's dead-letter copy was
// acknowledged, before or after the store took effect. The worker asks again
// instead of reading the records again, which would park the pill a second
// time (the e2e suite saw DLQ 101 for 100 pills so).
func TestExactlyOncePostgresDeadLettersOnceWhenStoringTheOffsetFails(t *testing.T) {
	for _, tc := range []struct {
		name     string
		lostCall bool
	}{{"the call never reached the database", true}, {"the call took effect, its answer lost", false}} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBroker(t)
			b.createTopics(1, allTopics...)
			_, dsnFile, conn := eventsDB(t)
			cfg := exactlyOncePostgres(b.config(), dsnFile)
			b.produce("orders", 0, 10, func(i int, r *kgo.Record) {
				r.Value = fmt.Appendf(nil, `{"id":"r-%d","n":%d}`, i, i)
				if i == 4 {
					r.Value = []byte("poison-4")
				}
			})
			snk, err := openSink(context.Background(), cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			flaky := &flakyAdvance{Transactional: snk.(sink.Transactional), lostCall: tc.lostCall}
			w := startWorker(t, cfg, flaky)
			eventually(t, 30*time.Second, "9 rows and everything committed", func() bool {
				return countEvents(t, conn).rows >= 9 && sumCommitted(b.committed("test.orders"), "orders") == 10
			})
			w.stop(t)
			if flaky.failed.Load() != 1 {
				t.Fatal("the offset store past the pill never failed: the test did not test")
			}
			if got := countEvents(t, conn); got.rows != 9 {
				t.Errorf("%d rows, want 9 (each good record once): %v", got.rows, got.perID)
			}
			if dlq := b.readAll("orders.dlq"); len(dlq) != 1 {
				t.Errorf("DLQ holds %d copies of the pill, want 1", len(dlq))
			}
		})
	}
}

// TestExactlyOncePostgresSurvivesCrashes runs the crash harness
// (crashharness_test.go) on the postgres sink with offsets in the database,
// writing into a table WITHOUT a unique key: three worker processes, 12
// SIGKILLs at points spread over a record's life, each while its victim
// works, flaky records walking the retry topics, poison pills and broker
// faults; before the drain Kafka's commit is moved ahead of the database.
// Afterwards every good record is a row exactly once (the sink's delivery log
// saw each once: no redelivery reached the table), every pill is in the
// dead-letter topic, and no retry marker is left pending.
func TestExactlyOncePostgresSurvivesCrashes(t *testing.T) {
	newCrashRun(t, crashPlan{
		g: postgresExactlyOnce, kills: 12, workers: 3,
		wl:     workload{total: 400_000, poisonEvery: 500, flakyEvery: 2500},
		faults: brokerFaults,
	}).run()
}
