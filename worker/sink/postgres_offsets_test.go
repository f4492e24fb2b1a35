package sink_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/worker/failure"
	"github.com/sluice-dev/sluice/worker/sink"
)

const group = "shop.orders"

// newEvents gives a test its own database with table events(id text, payload
// jsonb) WITHOUT a unique constraint on id: a record written twice shows up as
// two rows, so these tests don't lean on ON CONFLICT for their proof.
func newEvents(t *testing.T) (string, *pgx.Conn) {
	t.Helper()
	return pg.NewDatabase(t, fmt.Sprintf("sink_%d", dbSeq.Add(1)),
		"CREATE TABLE events (id text NOT NULL, payload jsonb NOT NULL)")
}

func openExactlyOnce(t *testing.T, dsn string) *sink.Postgres {
	t.Helper()
	s, err := sink.NewPostgres(context.Background(), sink.PostgresOptions{DSN: dsn, Table: "events", KeyColumn: "id", PayloadColumn: "payload", ExactlyOnce: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	// The partitions these tests write start at 0, as a worker assigned them
	// stores first (InitOffsets).
	if _, err := s.InitOffsets(context.Background(), group, map[string]map[int32]int64{"orders": {0: 0}, "orders.retry.1": {0: 0}}); err != nil {
		t.Fatal(err)
	}
	return s
}

// sourceRecs are records from..to-1 of orders[0], each its own origin.
func sourceRecs(from, to int64) []*sink.Record {
	var out []*sink.Record
	for o := from; o < to; o++ {
		out = append(out, &sink.Record{
			ConfiguredKey: fmt.Sprintf("r-%d", o),
			Rec:           &kgo.Record{Topic: "orders", Partition: 0, Offset: o, Value: fmt.Appendf(nil, `{"n":%d}`, o)},
			Origin:        sink.Origin{Topic: "orders", Partition: 0, Offset: o},
		})
	}
	return out
}

// retryCopy is a copy of source record origin at offset o of orders.retry.1[0].
func retryCopy(o, origin int64) *sink.Record {
	return &sink.Record{
		ConfiguredKey: fmt.Sprintf("r-%d", origin),
		Rec:           &kgo.Record{Topic: "orders.retry.1", Partition: 0, Offset: o, Value: fmt.Appendf(nil, `{"n":%d}`, origin)},
		Origin:        sink.Origin{Topic: "orders", Partition: 0, Offset: origin},
	}
}

// rowsPerID counts rows per id.
func rowsPerID(t *testing.T, conn *pgx.Conn) map[string]int {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT id, count(*) FROM events GROUP BY id")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	var id string
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&id, &n}, func() error { out[id] = n; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func stored(t *testing.T, s *sink.Postgres, topic string) int64 {
	t.Helper()
	offs, err := s.Offsets(context.Background(), group, map[string][]int32{topic: {0}})
	if err != nil {
		t.Fatal(err)
	}
	o, ok := offs[topic][0]
	if !ok {
		return -1
	}
	return o
}

func mustApply(t *testing.T, s *sink.Postgres, recs []*sink.Record) sink.ApplyResult {
	t.Helper()
	res := s.Apply(context.Background(), group, recs)
	if res.Err != nil || res.Applied != len(recs) {
		t.Fatalf("apply %d records: %+v", len(recs), res)
	}
	return res
}

func TestPostgresExactlyOnceStoresTheOffsetWithTheRowsAndFencesARepeat(t *testing.T) {
	dsn, conn := newEvents(t)
	s := openExactlyOnce(t, dsn)
	mustApply(t, s, sourceRecs(0, 3))
	if got := stored(t, s, "orders"); got != 3 {
		t.Fatalf("stored offset = %d, want 3", got)
	}
	// The same records again (a restart that resumed from Kafka's commit, a
	// zombie): nothing is written, and the caller learns where to resume.
	res := s.Apply(context.Background(), group, sourceRecs(0, 3))
	var fenced *sink.FencedError
	if !errors.As(res.Err, &fenced) || fenced.Stored != 3 || res.Applied != 0 {
		t.Fatalf("repeat: %+v, want a FencedError at stored offset 3", res)
	}
	// Overlapping the stored offset is fenced too; starting at it is not.
	if res := s.Apply(context.Background(), group, sourceRecs(2, 5)); !errors.As(res.Err, &fenced) {
		t.Fatalf("overlap: %+v, want fenced", res)
	}
	mustApply(t, s, sourceRecs(3, 5))
	for id, n := range rowsPerID(t, conn) {
		if n != 1 {
			t.Errorf("%s written %d times", id, n)
		}
	}
	if n := len(rowsPerID(t, conn)); n != 5 {
		t.Errorf("%d ids written, want 5", n)
	}
}

func TestPostgresExactlyOnceLetsOneOfTwoRacingConsumersWrite(t *testing.T) {
	dsn, conn := newEvents(t)
	// Two consumers believe they own orders[0] (one of them is a zombie that
	// lost it in a rebalance); each writes batches of 7 from its position and,
	// when fenced, resumes at the stored offset.
	const total = 500
	var wg sync.WaitGroup
	for range 2 {
		s := openExactlyOnce(t, dsn)
		wg.Go(func() {
			for pos := int64(0); pos < total; {
				res := s.Apply(context.Background(), group, sourceRecs(pos, min(pos+7, total)))
				var fenced *sink.FencedError
				switch {
				case errors.As(res.Err, &fenced):
					pos = fenced.Stored
				case res.Err != nil:
					t.Error(res.Err)
					return
				default:
					pos += int64(res.Applied)
				}
			}
		})
	}
	wg.Wait()
	got := rowsPerID(t, conn)
	for o := range int64(total) {
		if n := got[fmt.Sprintf("r-%d", o)]; n != 1 {
			t.Errorf("r-%d written %d times, want once", o, n)
		}
	}
}

func TestPostgresExactlyOnceWritesOneCopyOfARetriedRecord(t *testing.T) {
	ctx := context.Background()
	dsn, conn := newEvents(t)
	s := openExactlyOnce(t, dsn)
	mustApply(t, s, sourceRecs(0, 5))

	// Record 5 failed; its copy goes to a retry topic. The worker crashes after
	// Kafka acknowledged the copy but before it stored offset 6, so record 5
	// is parked again: two copies.
	src := sourceRecs(5, 6)
	for range 2 {
		done, err := s.PrepareParks(ctx, group, src, []bool{true})
		if err != nil || done[0] {
			t.Fatalf("prepare parks: done %v, err %v", done, err)
		}
	}
	if err := s.Advance(ctx, group, "orders", 0, 5, 6, nil); err != nil {
		t.Fatal(err)
	}
	// The first copy is written, the second is not.
	if res := mustApply(t, s, []*sink.Record{retryCopy(0, 5)}); res.Duplicates != 0 {
		t.Fatalf("first copy: %+v", res)
	}
	if res := mustApply(t, s, []*sink.Record{retryCopy(1, 5)}); res.Duplicates != 1 {
		t.Fatalf("second copy: %+v, want a duplicate", res)
	}
	// A third copy that failed again isn't parked any further: it is done.
	done, err := s.PrepareParks(ctx, group, []*sink.Record{retryCopy(2, 5)}, []bool{true})
	if err != nil || !done[0] {
		t.Fatalf("prepare park of a copy of a written record: done %v, err %v", done, err)
	}
	if n := rowsPerID(t, conn)["r-5"]; n != 1 {
		t.Fatalf("r-5 written %d times, want once", n)
	}
}

func TestPostgresExactlyOnceSourceRecordReadAgainClaimsItsRetryMarker(t *testing.T) {
	ctx := context.Background()
	dsn, conn := newEvents(t)
	s := openExactlyOnce(t, dsn)
	// Record 0 is parked to a retry topic, then the worker crashes before
	// storing offset 1: the next owner reads record 0 again and writes it.
	if _, err := s.PrepareParks(ctx, group, sourceRecs(0, 1), []bool{true}); err != nil {
		t.Fatal(err)
	}
	if res := mustApply(t, s, sourceRecs(0, 3)); res.Duplicates != 0 {
		t.Fatalf("%+v", res)
	}
	// The copy in the retry topic is then a duplicate.
	if res := mustApply(t, s, []*sink.Record{retryCopy(0, 0)}); res.Duplicates != 1 {
		t.Fatalf("copy: %+v, want a duplicate", res)
	}
	if n := rowsPerID(t, conn)["r-0"]; n != 1 {
		t.Fatalf("r-0 written %d times, want once", n)
	}
}

// A zombie parks record 0 (marker, then a copy in the retry topic) while the
// new owner's Apply waits for the partition's lock: Apply must see the marker
// committed while it waited, claim it, and the copy must then be a duplicate.
func TestPostgresExactlyOnceApplyWaitingOnAParkSeesItsMarker(t *testing.T) {
	ctx := context.Background()
	dsn, conn := newEvents(t)
	s := openExactlyOnce(t, dsn)
	if _, err := conn.Exec(ctx, `INSERT INTO sluice_offsets (consumer_group, topic, partition, next_offset) VALUES ($1, 'orders', 0, 0) ON CONFLICT DO NOTHING`, group); err != nil {
		t.Fatal(err)
	}
	zombie, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zombie.Exec(ctx, `SELECT FROM sluice_offsets WHERE consumer_group = $1 FOR UPDATE`, group); err != nil {
		t.Fatal(err)
	}
	applied := make(chan sink.ApplyResult, 1)
	go func() { applied <- s.Apply(ctx, group, sourceRecs(0, 3)) }()
	waitForLockWait(t, conn)
	if _, err := zombie.Exec(ctx, `INSERT INTO sluice_retries (consumer_group, topic, partition, "offset") VALUES ($1, 'orders', 0, 0)`, group); err != nil {
		t.Fatal(err)
	}
	if err := zombie.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if res := <-applied; res.Err != nil || res.Applied != 3 || res.Duplicates != 0 {
		t.Fatalf("apply: %+v", res)
	}
	if res := mustApply(t, s, []*sink.Record{retryCopy(0, 0)}); res.Duplicates != 1 {
		t.Fatalf("the zombie's copy: %+v, want a duplicate", res)
	}
	if n := rowsPerID(t, conn)["r-0"]; n != 1 {
		t.Fatalf("r-0 written %d times, want once", n)
	}
}

// waitForLockWait waits until some other session of the database waits for a lock.
func waitForLockWait(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	for range 500 {
		var n int
		if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no session waits for the lock")
}

func TestPostgresExactlyOnceParkIsFencedWhenAnotherConsumerMovedOn(t *testing.T) {
	ctx := context.Background()
	dsn, conn := newEvents(t)
	s := openExactlyOnce(t, dsn)
	mustApply(t, s, sourceRecs(0, 10))
	_, err := s.PrepareParks(ctx, group, sourceRecs(4, 5), []bool{true})
	var fenced *sink.FencedError
	if !errors.As(err, &fenced) || fenced.Stored != 10 {
		t.Fatalf("err = %v, want fenced at 10", err)
	}
	var marks int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM sluice_retries").Scan(&marks); err != nil || marks != 0 {
		t.Fatalf("a fenced park left %d retry marks (%v)", marks, err)
	}
	// A late advance from 4 is fenced: the offset never moves back.
	if err := s.Advance(ctx, group, "orders", 0, 4, 5, nil); !errors.As(err, &fenced) || fenced.Stored != 10 {
		t.Fatalf("late advance: %v, want fenced at 10", err)
	}
	if got := stored(t, s, "orders"); got != 10 {
		t.Fatalf("stored = %d after a late advance to 5, want 10", got)
	}
}

func TestPostgresExactlyOnceDeadLetteredRecordIsDone(t *testing.T) {
	ctx := context.Background()
	dsn, conn := newEvents(t)
	s := openExactlyOnce(t, dsn)
	// Two copies of record 0 exist (a crash after the park); one runs out of
	// retries and is dead-lettered. The other is then not written.
	if _, err := s.PrepareParks(ctx, group, sourceRecs(0, 1), []bool{true}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PrepareParks(ctx, group, []*sink.Record{retryCopy(0, 0)}, []bool{false}); err != nil {
		t.Fatal(err)
	}
	if err := s.Advance(ctx, group, "orders.retry.1", 0, 0, 1, []sink.Origin{{Topic: "orders", Partition: 0, Offset: 0}}); err != nil {
		t.Fatal(err)
	}
	if res := mustApply(t, s, []*sink.Record{retryCopy(1, 0)}); res.Duplicates != 1 {
		t.Fatalf("%+v, want a duplicate", res)
	}
	if n := len(rowsPerID(t, conn)); n != 0 {
		t.Fatalf("%d rows, want none", n)
	}
}

// TestPostgresExactlyOnceRefusesAGapAfterTheDatabaseLostCommits: a database
// that acknowledged commits and lost them (synchronous_commit off and a
// crash, a failover to an asynchronous standby) holds an older offset than
// the worker's position, and the rows of the lost transactions are gone. A
// chunk that doesn't start at the stored offset must not be written; the
// error says where to go back to, and writing from there fills the gap.
func TestPostgresExactlyOnceRefusesAGapAfterTheDatabaseLostCommits(t *testing.T) {
	ctx := context.Background()
	dsn, conn := newEvents(t)
	s := openExactlyOnce(t, dsn)
	mustApply(t, s, sourceRecs(0, 3))
	mustApply(t, s, sourceRecs(3, 6))
	// The database "forgets" the second transaction: its rows and its offset.
	if _, err := conn.Exec(ctx, `DELETE FROM events WHERE id IN ('r-3', 'r-4', 'r-5');
		UPDATE sluice_offsets SET next_offset = 3 WHERE topic = 'orders'`); err != nil {
		t.Fatal(err)
	}
	res := s.Apply(ctx, group, sourceRecs(6, 9)) // the worker carries on from memory
	var fenced *sink.FencedError
	if !errors.As(res.Err, &fenced) || fenced.Stored != 3 || res.Applied != 0 || !strings.Contains(res.Err.Error(), "lost acknowledged commits") {
		t.Fatalf("a chunk past the stored offset: %+v, want fenced at 3 saying the database lost commits", res)
	}
	if _, err := s.PrepareParks(ctx, group, sourceRecs(6, 7), []bool{true}); !errors.As(err, &fenced) || fenced.Stored != 3 {
		t.Fatalf("a park past the stored offset: %v, want fenced at 3", err)
	}
	if err := s.Advance(ctx, group, "orders", 0, 6, 7, nil); !errors.As(err, &fenced) || fenced.Stored != 3 {
		t.Fatalf("an advance from past the stored offset: %v, want fenced at 3", err)
	}
	mustApply(t, s, sourceRecs(3, 9)) // back to the stored offset
	got := rowsPerID(t, conn)
	for o := range int64(9) {
		if n := got[fmt.Sprintf("r-%d", o)]; n != 1 {
			t.Errorf("r-%d written %d times, want once", o, n)
		}
	}

	// Even the partition's offset row is gone: nothing is written, and the
	// error says so (Stored -1).
	if _, err := conn.Exec(ctx, `DELETE FROM sluice_offsets WHERE topic = 'orders'`); err != nil {
		t.Fatal(err)
	}
	if res := s.Apply(ctx, group, sourceRecs(9, 10)); !errors.As(res.Err, &fenced) || fenced.Stored != -1 || res.Applied != 0 {
		t.Fatalf("no stored offset: %+v, want fenced with Stored -1", res)
	}
}

// TestPostgresExactlyOnceInitOffsetsKeepsWhatIsStored: a partition gets the
// start it is given only when it has no stored offset.
func TestPostgresExactlyOnceInitOffsetsKeepsWhatIsStored(t *testing.T) {
	dsn, _ := newEvents(t)
	s := openExactlyOnce(t, dsn)
	mustApply(t, s, sourceRecs(0, 4))
	got, err := s.InitOffsets(context.Background(), group, map[string]map[int32]int64{"orders": {0: 100, 1: 7}})
	if err != nil {
		t.Fatal(err)
	}
	if got["orders"][0] != 4 || got["orders"][1] != 7 {
		t.Fatalf("InitOffsets = %v, want orders[0] kept at 4 and orders[1] started at 7", got)
	}
}

func TestPostgresExactlyOnceIsolatesThePoisonPill(t *testing.T) {
	dsn, conn := newEvents(t)
	s := openExactlyOnce(t, dsn)
	recs := sourceRecs(0, 4)
	recs[2].Rec.Value = []byte("not json")
	res := s.Apply(context.Background(), group, recs)
	if res.Applied != 2 || res.Failed != 1 || failure.ClassOf(res.Err) != failure.ClassPoison {
		t.Fatalf("%+v, want 2 applied then a poison pill", res)
	}
	if got := stored(t, s, "orders"); got != 2 {
		t.Fatalf("stored = %d, want 2 (the pill is not handled yet)", got)
	}
	if n := len(rowsPerID(t, conn)); n != 2 {
		t.Fatalf("%d rows, want 2", n)
	}
}

// A row the server refuses (a trigger, a serialization failure) stops the
// batch at that row alone: the records before it are applied, the offset
// stops at it, and the error is the row's; the records after it are left
// for the next call.
func TestPostgresExactlyOnceAppliesUpToTheRowTheServerRefuses(t *testing.T) {
	dsn, conn := newEvents(t)
	refuseRows(t, conn, "events", "40001")
	s := openExactlyOnce(t, dsn)
	recs := sourceRecs(0, 5)
	recs[2].Rec.Value = []byte(`{"n":2,"refuse":true}`)
	res := s.Apply(context.Background(), group, recs)
	if res.Applied != 2 || res.Failed != 1 || failure.ClassOf(res.Err) != failure.ClassTransient || !strings.Contains(res.Err.Error(), "r-2 refused") {
		t.Fatalf("%+v, want 2 applied, then record 2 failing transiently with its own error", res)
	}
	if got := stored(t, s, "orders"); got != 2 {
		t.Fatalf("stored = %d, want 2", got)
	}
	if n := len(rowsPerID(t, conn)); n != 2 {
		t.Fatalf("%d rows, want 2: the records after the refused one wait for the next call", n)
	}
}

func TestPostgresExactlyOnceCreatesItsTablesInTheTablesSchema(t *testing.T) {
	ctx := context.Background()
	dsn, conn := newEvents(t)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA shop; CREATE TABLE shop.orders (id text, payload text)"); err != nil {
		t.Fatal(err)
	}
	s, err := sink.NewPostgres(ctx, sink.PostgresOptions{DSN: dsn, Table: "shop.orders", KeyColumn: "id", PayloadColumn: "payload", ExactlyOnce: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('shop.sluice_offsets') IS NOT NULL AND to_regclass('shop.sluice_retries') IS NOT NULL").Scan(&ok); err != nil || !ok {
		t.Fatalf("shop.sluice_offsets and shop.sluice_retries exist: %v (%v)", ok, err)
	}
}

func TestPostgresAtLeastOnceNeedsAUniqueKey(t *testing.T) {
	dsn, _ := newEvents(t)
	_, err := sink.NewPostgres(context.Background(), sink.PostgresOptions{DSN: dsn, Table: "events", KeyColumn: "id", PayloadColumn: "payload"})
	if err == nil || !strings.Contains(err.Error(), "no unique index") {
		t.Fatalf("err = %v, want one saying the key column needs a unique index", err)
	}
}
