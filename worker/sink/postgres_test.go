package sink_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/internal/testpg"
	"github.com/sluice-dev/sluice/worker/failure"
	"github.com/sluice-dev/sluice/worker/sink"
)

var pg *testpg.Server

func TestMain(m *testing.M) {
	var err error
	if pg, err = testpg.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = pg.Stop()
	os.Exit(code)
}

var dbSeq atomic.Int32

// newTable gives a test its own database with table orders(id text primary key,
// payload <payloadType>).
func newTable(t *testing.T, payloadType string) (dsn string, conn *pgx.Conn) {
	t.Helper()
	return pg.NewDatabase(t, fmt.Sprintf("sink_%d", dbSeq.Add(1)),
		"CREATE TABLE orders (id text PRIMARY KEY, payload "+payloadType+" NOT NULL)")
}

// openPostgres opens the sink on table orders' columns id and payload.
func openPostgres(t *testing.T, dsn, table string) *sink.Postgres {
	t.Helper()
	s, err := sink.NewPostgres(context.Background(), sink.PostgresOptions{DSN: dsn, Table: table, KeyColumn: "id", PayloadColumn: "payload"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func records(values ...string) []*sink.Record {
	out := make([]*sink.Record, len(values))
	for i, v := range values {
		out[i] = &sink.Record{ConfiguredKey: fmt.Sprintf("k%d", i), Rec: &kgo.Record{Value: []byte(v)}}
	}
	return out
}

func count(t *testing.T, conn *pgx.Conn) int {
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM orders").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPostgresInsertsABatchAndIgnoresRedeliveries(t *testing.T) {
	ctx := context.Background()
	dsn, conn := newTable(t, "jsonb")
	s := openPostgres(t, dsn, "orders")
	batch := records(`{"n":0}`, `{"n":1}`, `{"n":2}`)
	for range 3 { // redelivered twice: no effect
		for i, err := range s.Write(ctx, batch) {
			if err != nil {
				t.Fatalf("record %d: %v", i, err)
			}
		}
	}
	if n := count(t, conn); n != 3 {
		t.Fatalf("rows = %d, want 3", n)
	}
	var payload string
	if err := conn.QueryRow(ctx, "SELECT payload::text FROM orders WHERE id = 'k1'").Scan(&payload); err != nil || payload != `{"n": 1}` {
		t.Fatalf("payload = %q (%v)", payload, err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestPostgresIsolatesThePoisonPillInABatch(t *testing.T) {
	ctx := context.Background()
	dsn, conn := newTable(t, "jsonb")
	s := openPostgres(t, dsn, "public.orders")
	errs := s.Write(ctx, records(`{"ok":1}`, `not json`, `{"ok":3}`))
	if errs[0] != nil || errs[2] != nil {
		t.Fatalf("good records failed: %v", errs)
	}
	if failure.ClassOf(errs[1]) != failure.ClassPoison || !strings.Contains(errs[1].Error(), "json") {
		t.Fatalf("invalid JSON for a jsonb column: %v (class %q), want poison", errs[1], failure.ClassOf(errs[1]))
	}
	if n := count(t, conn); n != 2 {
		t.Fatalf("rows = %d, want the 2 good ones", n)
	}
}

// refuseRows makes table's inserts fail with SQLSTATE code for rows whose
// payload has "refuse", as a trigger of the user's (or a serialization
// failure over one row) would.
func refuseRows(t *testing.T, conn *pgx.Conn, table, code string) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), fmt.Sprintf(`
		CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.payload::jsonb ? 'refuse' THEN
				RAISE EXCEPTION 'row %% refused', NEW.id USING ERRCODE = '%s';
			END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER refuse BEFORE INSERT ON %s FOR EACH ROW EXECUTE FUNCTION refuse();`, code, table)); err != nil {
		t.Fatal(err)
	}
}

// A row the server refuses for its own sake fails alone: its neighbours are
// written, and its error is its own (transient: it goes to the retry topics
// by itself).
func TestPostgresWritesTheNeighboursOfARowTheServerRefuses(t *testing.T) {
	for _, code := range []string{"40001", "P0001"} {
		t.Run(code, func(t *testing.T) {
			dsn, conn := newTable(t, "jsonb")
			refuseRows(t, conn, "orders", code)
			s := openPostgres(t, dsn, "orders")
			errs := s.Write(context.Background(), records(`{"n":0}`, `{"n":1,"refuse":true}`, `{"n":2}`, `{"n":3,"refuse":true}`, `{"n":4}`))
			for _, i := range []int{0, 2, 4} {
				if errs[i] != nil {
					t.Errorf("record %d, a good one, failed with its neighbour: %v", i, errs[i])
				}
			}
			for _, i := range []int{1, 3} {
				if failure.ClassOf(errs[i]) != failure.ClassTransient || !strings.Contains(errs[i].Error(), fmt.Sprintf("k%d refused", i)) {
					t.Errorf("record %d: %v, want its own transient error", i, errs[i])
				}
			}
			if n := count(t, conn); n != 3 {
				t.Fatalf("rows = %d, want the 3 good ones", n)
			}
		})
	}
}

func TestPostgresStoresBinaryValuesInBytea(t *testing.T) {
	ctx := context.Background()
	dsn, conn := newTable(t, "bytea")
	s := openPostgres(t, dsn, "orders")
	if errs := s.Write(ctx, records("\x00\xff binary")); errs[0] != nil {
		t.Fatal(errs[0])
	}
	var got []byte
	if err := conn.QueryRow(ctx, "SELECT payload FROM orders").Scan(&got); err != nil || string(got) != "\x00\xff binary" {
		t.Fatalf("payload = %q (%v)", got, err)
	}
}

func TestPostgresFailuresOfTheDatabaseAreTransient(t *testing.T) {
	ctx := context.Background()
	dsn, conn := newTable(t, "text")
	s := openPostgres(t, dsn, "orders")
	if _, err := conn.Exec(ctx, "DROP TABLE orders"); err != nil {
		t.Fatal(err)
	}
	for _, err := range s.Write(ctx, records("a", "b")) {
		if failure.ClassOf(err) != failure.ClassTransient {
			t.Fatalf("a missing table is the database's problem, not the record's: %v", err)
		}
	}
}

func TestPostgresRefusesAMissingTableAtStart(t *testing.T) {
	dsn, _ := newTable(t, "text")
	_, err := sink.NewPostgres(context.Background(), sink.PostgresOptions{DSN: dsn, Table: "nope", KeyColumn: "id", PayloadColumn: "payload"})
	if err == nil || !strings.Contains(err.Error(), `table "nope"`) {
		t.Fatalf("err = %v, want one naming the table", err)
	}
}
