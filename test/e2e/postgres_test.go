//go:build e2e

package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ordersDDL is the postgres sample's table, plus what lets the test see every
// write the worker committed: a BEFORE INSERT trigger fires for each row the
// worker inserts (also one ON CONFLICT then drops) and logs it in
// orders_writes, in the worker's own transaction. With ExactlyOnce each order
// is written once; a second committed write would be a duplicate the primary
// key only hides.
var ordersDDL = []string{
	`CREATE TABLE orders (id text PRIMARY KEY, payload jsonb NOT NULL)`,
	`CREATE TABLE orders_writes (id text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())`,
	`CREATE FUNCTION log_order_write() RETURNS trigger LANGUAGE plpgsql AS $$
	 BEGIN INSERT INTO orders_writes (id) VALUES (NEW.id); RETURN NEW; END $$`,
	`CREATE TRIGGER orders_write BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION log_order_write()`,
}

// ordersDatabase makes the database a postgres pipeline writes to and the
// Secret orders-pg (key dsn) the sample names, with the address pods reach.
func (s *suite) ordersDatabase(t testing.TB, ns, db string) *pgx.Conn {
	t.Helper()
	_, conn := s.pg.NewDatabase(t, db, ordersDDL...)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders-pg"},
		StringData: map[string]string{"dsn": s.pg.DSNAt(s.env.host, db)}}
	if err := s.k.c.Create(context.Background(), secret); err != nil {
		t.Fatal(err)
	}
	return conn
}

// pgWrites is what the table holds: rows per id and committed writes per id.
type pgWrites struct {
	rows   map[string]bool
	writes map[string]int
}

func readOrders(t testing.TB, conn *pgx.Conn) pgWrites {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := pgWrites{rows: map[string]bool{}, writes: map[string]int{}}
	rows, err := conn.Query(ctx, `SELECT id FROM orders`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		w.rows[id] = true
	}
	rows, err = conn.Query(ctx, `SELECT id, count(*) FROM orders_writes GROUP BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		w.writes[id] = n
	}
	return w
}

func countRows(ctx context.Context, conn *pgx.Conn) (int, error) {
	var n int
	err := conn.QueryRow(ctx, `SELECT count(*) FROM orders`).Scan(&n)
	return n, err
}

// terminateWorkers ends the workers' sessions on the database (those from
// other addresses than loopback, where the test connects): to the worker, a
// transient sink failure (connection lost mid-batch).
func terminateWorkers(ctx context.Context, conn *pgx.Conn, db string) (int, error) {
	var n int
	err := conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = $1 AND pid <> pg_backend_pid() AND client_addr IS DISTINCT FROM '127.0.0.1'`, db).Scan(&n)
	return n, err
}
