package worker

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// deliveryDB is the crash harness's PostgreSQL: the sink's table (orders with
// a primary key for at-least-once, events without one for exactly-once) plus
// a delivery log that counts what the sink saw, not only what it kept.
//
//   - sink_deliveries gets a row per record in every insert statement that
//     committed (effect false: the sink saw it) and a row per record that
//     statement really inserted (effect true). A redelivery at-least-once is
//     a second "saw" row whose ON CONFLICT DO NOTHING kept no second effect; a
//     duplicate effect is a second "effect" row. (A statement that rolled back
//     leaves no row: it had no effect.) A row names the record by its
//     payload's "id" (r-<i>; the idempotency key too, unless the run keeps
//     the default key, the source coordinates) and "n" (i), and seq is the
//     log's insertion order (a key's records are written one statement after
//     the other, so their effects' seq follow their order).
//   - sink_holds names the workers (by application_name, the pod name) whose
//     next insert waits for the harness's advisory lock: the harness holds a
//     sink call, kills its worker, and then lets the statement go through or
//     terminates it.
//   - a record whose payload names a sequence in "flaky" fails its first two
//     inserts transiently (SQLSTATE 40001, failing its statement): the sink
//     writes the batch again row by row, and it alone walks the retry topics.
type deliveryDB struct {
	t     *testing.T
	table string
	dsn   string
	conn  *pgx.Conn // the harness's queries
	lock  *pgx.Conn // holds holdLock while a sink call is held
}

// holdLock is the advisory lock key a held sink statement waits for.
const holdLock = 7_100_112

func newDeliveryDB(t *testing.T, table string) *deliveryDB {
	t.Helper()
	ctx := context.Background()
	dsn, conn := postgresDB(t) // creates orders(id text primary key, payload jsonb)
	if table != "orders" {
		if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE TABLE %s (id text NOT NULL, payload jsonb NOT NULL)", table)); err != nil {
			t.Fatal(err)
		}
	}
	ddl := fmt.Sprintf(`
		CREATE TABLE sink_deliveries (seq bigserial, id text NOT NULL, n bigint NOT NULL, app text NOT NULL, effect boolean NOT NULL);
		CREATE TABLE sink_holds (app text PRIMARY KEY);
		CREATE FUNCTION sink_saw() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF EXISTS (SELECT FROM sink_holds WHERE app = current_setting('application_name')) THEN
				PERFORM pg_advisory_xact_lock_shared(%[2]d);
			END IF;
			IF NEW.payload ? 'flaky' AND nextval(NEW.payload->>'flaky') <= 2 THEN
				RAISE EXCEPTION 'record %% is flaky', NEW.id USING ERRCODE = '40001';
			END IF;
			INSERT INTO sink_deliveries (id, n, app, effect)
				VALUES (NEW.payload->>'id', (NEW.payload->>'n')::bigint, current_setting('application_name'), false);
			RETURN NEW;
		END $$;
		CREATE FUNCTION sink_kept() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			INSERT INTO sink_deliveries (id, n, app, effect)
				SELECT payload->>'id', (payload->>'n')::bigint, current_setting('application_name'), true FROM kept;
			RETURN NULL;
		END $$;
		CREATE TRIGGER sink_saw BEFORE INSERT ON %[1]s FOR EACH ROW EXECUTE FUNCTION sink_saw();
		CREATE TRIGGER sink_kept AFTER INSERT ON %[1]s REFERENCING NEW TABLE AS kept
			FOR EACH STATEMENT EXECUTE FUNCTION sink_kept();`, table, holdLock)
	if _, err := conn.Exec(ctx, ddl); err != nil {
		t.Fatal(err)
	}
	lock, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lock.Close(ctx) })
	return &deliveryDB{t: t, table: table, dsn: dsn, conn: conn, lock: lock}
}

// writeDSN writes the DSN a worker connects with: application_name is its
// pod name, which the holds and the delivery log go by.
func (d *deliveryDB) writeDSN(file, pod string) {
	d.t.Helper()
	u, err := url.Parse(d.dsn)
	if err != nil {
		d.t.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", pod)
	u.RawQuery = q.Encode()
	if err := os.WriteFile(file, []byte(u.String()), 0o600); err != nil {
		d.t.Fatal(err)
	}
}

// createSequences creates the sequences of the flaky records among 0..n-1.
func (d *deliveryDB) createSequences(wl workload) {
	d.t.Helper()
	wl.createSequences(d.t, d.conn)
}

// hold makes the next insert of pod wait until release or terminate.
func (d *deliveryDB) hold(pod string) {
	d.t.Helper()
	ctx := context.Background()
	if _, err := d.lock.Exec(ctx, "SELECT pg_advisory_lock($1)", holdLock); err != nil {
		d.t.Fatal(err)
	}
	if _, err := d.conn.Exec(ctx, "INSERT INTO sink_holds VALUES ($1)", pod); err != nil {
		d.t.Fatal(err)
	}
}

// waitHeld waits until an insert statement of pod waits for the hold and
// returns its server process IDs (none when none came within the bound).
func (d *deliveryDB) waitHeld(pod string, within time.Duration) []int32 {
	d.t.Helper()
	deadline := time.Now().Add(within)
	for {
		var pids []int32
		if err := d.conn.QueryRow(context.Background(), `SELECT coalesce(array_agg(pid), '{}') FROM pg_stat_activity
			WHERE application_name = $1 AND wait_event_type = 'Lock' AND wait_event = 'advisory'`, pod).Scan(&pids); err != nil {
			d.t.Fatal(err)
		}
		if len(pids) > 0 || time.Now().After(deadline) {
			return pids
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// endHold ends a hold: with terminate, the held statements' backends are
// terminated (their transactions roll back: the write never happened);
// otherwise they go on and commit, though the worker that sent them is gone.
func (d *deliveryDB) endHold(pod string, pids []int32, terminate bool) {
	d.t.Helper()
	ctx := context.Background()
	if terminate && len(pids) > 0 {
		if _, err := d.conn.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", pids); err != nil {
			d.t.Fatal(err)
		}
	}
	if _, err := d.conn.Exec(ctx, "DELETE FROM sink_holds WHERE app = $1", pod); err != nil {
		d.t.Fatal(err)
	}
	if _, err := d.lock.Exec(ctx, "SELECT pg_advisory_unlock($1)", holdLock); err != nil {
		d.t.Fatal(err)
	}
}

// sinkCounts is what the sink saw and kept, per idempotency key (the record's id).
type sinkCounts struct {
	saw, kept map[string]int
}

func newSinkCounts() sinkCounts { return sinkCounts{saw: map[string]int{}, kept: map[string]int{}} }

func (d *deliveryDB) counts() sinkCounts {
	d.t.Helper()
	rows, err := d.conn.Query(context.Background(),
		"SELECT id, count(*) FILTER (WHERE NOT effect), count(*) FILTER (WHERE effect) FROM sink_deliveries GROUP BY id")
	if err != nil {
		d.t.Fatal(err)
	}
	c := newSinkCounts()
	var id string
	var saw, kept int
	if _, err := pgx.ForEachRow(rows, []any{&id, &saw, &kept}, func() error {
		c.saw[id], c.kept[id] = saw, kept
		return nil
	}); err != nil {
		d.t.Fatal(err)
	}
	return c
}

// keptKeys is how many distinct keys took effect so far.
func (d *deliveryDB) keptKeys() int {
	d.t.Helper()
	var n int
	if err := d.conn.QueryRow(context.Background(), "SELECT count(DISTINCT id) FROM sink_deliveries WHERE effect").Scan(&n); err != nil {
		d.t.Fatal(err)
	}
	return n
}

// rows is the sink table's rows per record id (the payload's; the delivery
// log's effects must agree).
func (d *deliveryDB) rows() map[string]int {
	d.t.Helper()
	rows, err := d.conn.Query(context.Background(), fmt.Sprintf("SELECT payload->>'id', count(*) FROM %s GROUP BY 1", d.table))
	if err != nil {
		d.t.Fatal(err)
	}
	out := map[string]int{}
	var id string
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&id, &n}, func() error { out[id] = n; return nil }); err != nil {
		d.t.Fatal(err)
	}
	return out
}

// effect is a row of the delivery log that took effect.
type effect struct {
	seq, n int64
	app    string
}

// effects are the delivery log's effects in insertion order.
func (d *deliveryDB) effects() []effect {
	d.t.Helper()
	rows, err := d.conn.Query(context.Background(), "SELECT seq, n, app FROM sink_deliveries WHERE effect ORDER BY seq")
	if err != nil {
		d.t.Fatal(err)
	}
	var out []effect
	var e effect
	if _, err := pgx.ForEachRow(rows, []any{&e.seq, &e.n, &e.app}, func() error { out = append(out, e); return nil }); err != nil {
		d.t.Fatal(err)
	}
	return out
}

// dsnFile is a fresh file name for a worker's DSN.
func dsnFile(t *testing.T) string { return filepath.Join(t.TempDir(), "dsn") }

// kafkaSinkCounts counts, per record id, the outputs of the transactional
// kafka sink (and the dead-letter copies): saw is what a read_uncommitted
// reader sees (every output written, aborted transactions included), kept
// what a read_committed reader sees.
func kafkaSinkCounts(b *broker, id func(value []byte) string) sinkCounts {
	c := newSinkCounts()
	for _, topic := range []string{"orders-out", "orders.dlq"} {
		for _, r := range b.readCommitted(topic) {
			c.kept[id(r.Value)]++
		}
		for _, r := range b.readUntilQuiet(topic, false) {
			c.saw[id(r.Value)]++
		}
	}
	return c
}
