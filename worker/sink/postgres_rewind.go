package sink

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// A rewind (a StreamReplay of mode Rewind) moves a pipeline back on its source
// topic. With ExactlyOnce delivery and the postgres sink the database, not
// Kafka, holds where each partition resumes, so the operator moves the rows
// of OffsetsTable too; these functions are its side of the tables, kept here
// with the statements that write them.

// offsetTables are the quoted names of the offsets and retries tables next to
// table (in its schema; unqualified: the connection's search path).
func offsetTables(table string) (offsets, retries string) {
	path := strings.Split(table, ".")
	return offsetTablesIn(path[:len(path)-1])
}

// offsetTablesIn are the quoted names of the offsets and retries tables in
// schema (empty: the search path).
func offsetTablesIn(schema []string) (offsets, retries string) {
	name := func(n string) string { return pgx.Identifier(append(append([]string{}, schema...), n)).Sanitize() }
	return name(OffsetsTable), name(RetriesTable)
}

func tablesExist(ctx context.Context, conn *pgx.Conn, offsets, retries string) (bool, error) {
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL`, offsets, retries).Scan(&exists); err != nil {
		return false, fmt.Errorf("postgres: look for %s: %w", offsets, err)
	}
	return exists, nil
}

// StoredOffsets reads the next offsets ExactlyOnce delivery stored for group on
// topic, in the database of dsn, next to table. exists is false when the
// tables are not there (the pipeline never ran ExactlyOnce on this database):
// Kafka's commits are then the only position.
func StoredOffsets(ctx context.Context, dsn, table, group, topic string) (stored map[int32]int64, exists bool, err error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, false, fmt.Errorf("postgres: connect: %w", err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	offsets, retries := offsetTables(table)
	if exists, err = tablesExist(ctx, conn, offsets, retries); err != nil || !exists {
		return nil, false, err
	}
	rows, err := conn.Query(ctx, fmt.Sprintf(`SELECT partition, next_offset FROM %s WHERE consumer_group = $1 AND topic = $2`, offsets), group, topic)
	if err != nil {
		return nil, true, fmt.Errorf("postgres: read %s: %w", offsets, err)
	}
	stored = map[int32]int64{}
	var p int32
	var next int64
	if _, err := pgx.ForEachRow(rows, []any{&p, &next}, func() error { stored[p] = next; return nil }); err != nil {
		return nil, true, fmt.Errorf("postgres: read %s: %w", offsets, err)
	}
	return stored, true, nil
}

// RewindStoredOffsets sets the stored next offset of group on each partition
// of topic in to, in one transaction, and forgets the done marks of that
// topic's records from the new position on: they are processed again, and a
// done mark would have Apply take them for copies of records already written.
// Pending marks stay (a retry copy still in a retry topic): whichever of the
// copy and the record read again comes first is written, once. Setting the
// same offsets again changes nothing more, so a rewind interrupted after this
// commit can run it again. Without the tables there is nothing to move (a
// worker stores the Kafka commit first). The workers must be stopped.
func RewindStoredOffsets(ctx context.Context, dsn, table, group, topic string, to map[int32]int64) error {
	if len(to) == 0 {
		return nil
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("postgres: connect: %w", err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	offsets, retries := offsetTables(table)
	if exists, err := tablesExist(ctx, conn, offsets, retries); err != nil || !exists {
		return err
	}
	partitions := make([]int32, 0, len(to))
	next := make([]int64, 0, len(to))
	for p, o := range to {
		partitions, next = append(partitions, p), append(next, o)
	}
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %s AS o (consumer_group, topic, partition, next_offset)
			SELECT $1, $2, p, n FROM unnest($3::integer[], $4::bigint[]) AS u(p, n)
			ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET next_offset = excluded.next_offset, updated_at = now()`, offsets),
			group, topic, partitions, next); err != nil {
			return fmt.Errorf("set %s: %w", offsets, err)
		}
		if _, err := tx.Exec(ctx, fmt.Sprintf(`DELETE FROM %s AS m USING unnest($3::integer[], $4::bigint[]) AS u(p, n)
			WHERE m.consumer_group = $1 AND m.topic = $2 AND m.partition = u.p AND m."offset" >= u.n AND m.done`, retries),
			group, topic, partitions, next); err != nil {
			return fmt.Errorf("clear the done marks in %s: %w", retries, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("postgres: rewind group %s on %s: %w", group, topic, err)
	}
	return nil
}
