package sink_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/worker/sink"
)

// TestPostgresTableNamesAreCaseSensitive: the sink quotes the table name in
// its inserts, so its checks must look the table up the same way: "Orders"
// is a table of its own, not orders.
func TestPostgresTableNamesAreCaseSensitive(t *testing.T) {
	dsn, conn := pg.NewDatabase(t, fmt.Sprintf("sink_%d", dbSeq.Add(1)),
		`CREATE TABLE "Orders" (id text PRIMARY KEY, payload jsonb NOT NULL)`)
	s, err := sink.NewPostgres(context.Background(), sink.PostgresOptions{DSN: dsn, Table: "Orders", KeyColumn: "id", PayloadColumn: "payload"})
	if err != nil {
		t.Fatalf("open the sink on a mixed-case table: %v", err)
	}
	defer func() { _ = s.Close() }()
	if errs := s.Write(context.Background(), records(`{"a":1}`)); errs[0] != nil {
		t.Fatal(errs[0])
	}
	var n int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM "Orders"`).Scan(&n); err != nil || n != 1 {
		t.Fatalf(`"Orders" holds %d rows (%v), want 1`, n, err)
	}
	if _, err := sink.NewPostgres(context.Background(), sink.PostgresOptions{DSN: dsn, Table: "orders", KeyColumn: "id", PayloadColumn: "payload"}); err == nil {
		t.Fatal(`"orders" is not "Orders": opening it must fail`)
	}
}

// TestPostgresReportsSettingsThatForgetAcknowledgedCommits: the test server
// runs with fsync=off and synchronous_commit=off (for speed); a database set
// back to synchronous_commit=on is found with fsync=off only.
func TestPostgresReportsSettingsThatForgetAcknowledgedCommits(t *testing.T) {
	ctx := context.Background()
	name := fmt.Sprintf("sink_%d", dbSeq.Add(1))
	dsn, conn := pg.NewDatabase(t, name, "CREATE TABLE orders (id text PRIMARY KEY, payload jsonb NOT NULL)")
	open := func() []string {
		s, err := sink.NewPostgres(ctx, sink.PostgresOptions{DSN: dsn, Table: "orders", KeyColumn: "id", PayloadColumn: "payload"})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = s.Close() }()
		return s.DurabilityRisks()
	}
	has := func(risks []string, setting string) bool {
		return slices.ContainsFunc(risks, func(r string) bool { return strings.HasPrefix(r, setting) })
	}
	if risks := open(); !has(risks, "fsync=off") || !has(risks, "synchronous_commit=off") {
		t.Fatalf("risks = %q, want fsync=off and synchronous_commit=off", risks)
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s SET synchronous_commit = on", name)); err != nil {
		t.Fatal(err)
	}
	if risks := open(); !has(risks, "fsync=off") || has(risks, "synchronous_commit=off") {
		t.Fatalf("risks = %q, want fsync=off only", risks)
	}
}
