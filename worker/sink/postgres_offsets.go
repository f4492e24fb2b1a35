package sink

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluice-dev/sluice/worker/failure"
)

// Transactional is a sink that stores the consumer's position with the records
// it writes, in one transaction (ExactlyOnce delivery with the postgres sink).
// The sink, not Kafka, is then the source of truth for where a partition
// resumes, and a record is written at most once whatever crashes, rebalances
// or zombie consumers happen: every write is fenced by the stored offset.
type Transactional interface {
	Sink
	// Offsets returns the stored next offset of each of the partitions that
	// has one.
	Offsets(ctx context.Context, group string, parts map[string][]int32) (map[string]map[int32]int64, error)
	// InitOffsets stores starts[topic][partition] as the next offset of each
	// partition that has no stored offset yet, and returns the stored next
	// offset of every partition in starts (a stored one wins). A consumer calls
	// it for the partitions it is assigned, so that every partition has a
	// stored offset before anything is written to it.
	InitOffsets(ctx context.Context, group string, starts map[string]map[int32]int64) (map[string]map[int32]int64, error)
	// Apply writes recs (consecutive records of one partition, in fetch order)
	// and stores the offset after the last one, in one transaction, if the
	// stored offset is recs[0]'s; otherwise nothing happens and the result's
	// Err is a *FencedError saying where the partition stands. The stored
	// offset is the truth: past recs[0], another consumer handled the records;
	// short of it, the database lost transactions it had acknowledged, and the
	// consumer must go back there rather than leave a gap. A record whose
	// origin is marked done (a copy of a record already written or
	// dead-lettered) is not written again. When a record's data is refused,
	// the records before it are applied and the rest are not tried.
	Apply(ctx context.Context, group string, recs []*Record) ApplyResult
	// PrepareParks is called before failed records (consecutive, of one
	// partition) are copied to retry or dead-letter topics: fenced like Apply,
	// it marks the origins of the records bound for a retry topic (retry[i])
	// so that only one copy of each is ever written. It reports which records
	// need no copy because their origin is already done.
	PrepareParks(ctx context.Context, group string, recs []*Record, retry []bool) (done []bool, err error)
	// Advance moves a partition's stored offset from from to next, and marks
	// the origins of dead-lettered records done, in one transaction; it is
	// called once parked copies are acknowledged. A stored offset other than
	// from is a *FencedError and nothing changes.
	Advance(ctx context.Context, group, topic string, partition int32, from, next int64, deadLettered []Origin) error
}

// ApplyResult is what Apply did with a batch.
type ApplyResult struct {
	// Applied records, recs[:Applied], are handled: the offset after them is
	// stored.
	Applied int
	// Duplicates of the applied records were copies of records already done;
	// they were not written again.
	Duplicates int
	// Failed records, recs[Applied:Applied+Failed], failed with Err; the ones
	// after them were not tried.
	Failed int
	Err    error
}

// FencedError says that the stored offset of a partition is not where the
// records a consumer tried to write start. Past them: another consumer (or an
// earlier transaction whose outcome this one didn't learn) handled them.
// Short of them: the database lost commits it had acknowledged. Nothing was
// written; the consumer resumes at Stored, which is -1 when the partition has
// no stored offset at all (the database lost it too).
type FencedError struct {
	Topic     string
	Partition int32
	Stored    int64
	Tried     int64
}

func (e *FencedError) Error() string {
	switch {
	case e.Stored < 0:
		return fmt.Sprintf("%s[%d]: no stored offset, while records from offset %d were being written: the database lost acknowledged commits", e.Topic, e.Partition, e.Tried)
	case e.Stored < e.Tried:
		return fmt.Sprintf("%s[%d]: stored offset %d is short of offset %d: the database lost acknowledged commits; going back to %d", e.Topic, e.Partition, e.Stored, e.Tried, e.Stored)
	}
	return fmt.Sprintf("%s[%d]: stored offset %d is past offset %d: another consumer handled these records", e.Topic, e.Partition, e.Stored, e.Tried)
}

// Tables ExactlyOnce delivery keeps next to the sink's table (in its schema),
// created when missing; docs/worker.md describes them.
const (
	// OffsetsTable holds the next offset to consume per consumer group, topic
	// and partition (source and retry topics).
	OffsetsTable = "sluice_offsets"
	// RetriesTable marks the source records that have copies in retry topics,
	// and whether one of them was written (or dead-lettered) yet.
	RetriesTable = "sluice_retries"
)

type txStatements struct {
	offsets, retries string // quoted table names
	fenceApply       string // lock the partition's offset row; move it if not past the first record
	fencePark        string // lock it without moving it
	stored           string
	apply            string
	markRetries      string
	advance          string
	read             string
	init             string
}

func prepareExactlyOnce(ctx context.Context, pool *pgxpool.Pool, schema []string, table, key, payload, typ, onConflict string) (*txStatements, error) {
	st := &txStatements{}
	st.offsets, st.retries = offsetTablesIn(schema)
	if err := createTables(ctx, pool, st); err != nil {
		return nil, err
	}
	// The fence passes only when the stored offset is exactly where the
	// records start ($4): the row exists from the assignment on (InitOffsets).
	st.fenceApply = fmt.Sprintf(`UPDATE %s AS o SET next_offset = $5, updated_at = now()
		WHERE o.consumer_group = $1 AND o.topic = $2 AND o.partition = $3 AND o.next_offset = $4 RETURNING true`, st.offsets)
	st.fencePark = fmt.Sprintf(`UPDATE %s AS o SET next_offset = o.next_offset
		WHERE o.consumer_group = $1 AND o.topic = $2 AND o.partition = $3 AND o.next_offset = $4 RETURNING true`, st.offsets)
	st.init = fmt.Sprintf(`INSERT INTO %s (consumer_group, topic, partition, next_offset)
		SELECT $1, t, p, n FROM unnest($2::text[], $3::integer[], $4::bigint[]) AS u(t, p, n)
		ON CONFLICT (consumer_group, topic, partition) DO NOTHING`, st.offsets)
	st.stored = fmt.Sprintf(`SELECT next_offset FROM %s WHERE consumer_group = $1 AND topic = $2 AND partition = $3`, st.offsets)
	// The statements after the fence run only if the fence wrote the
	// partition's row in this transaction (its xmin is ours); when it didn't,
	// they do nothing, and the transaction commits nothing.
	guard := fmt.Sprintf(`EXISTS (SELECT FROM %s AS f WHERE f.consumer_group = $1 AND f.topic = $2 AND f.partition = $3
		AND f.xmin = pg_current_xact_id()::xid)`, st.offsets)
	// Runs after the fence, in the same transaction, so that its snapshot sees
	// every retry marker committed before the partition's row was locked. A
	// record is written unless its origin has a marker that this statement
	// doesn't claim (pending → done): the marker row lock makes two copies of
	// one record race for it, and only one wins.
	st.apply = fmt.Sprintf(`WITH batch AS (
			SELECT * FROM unnest($4::text[], $5::%[1]s[], $6::text[], $7::integer[], $8::bigint[]) WITH ORDINALITY AS u(k, v, ot, op, oo, i)
			WHERE %[7]s
		), claimed AS (
			UPDATE %[2]s AS m SET done = true FROM batch AS b
			WHERE m.consumer_group = $1 AND m.topic = b.ot AND m.partition = b.op AND m."offset" = b.oo AND NOT m.done
			RETURNING b.i
		), fresh AS (
			SELECT b.k, b.v, b.i FROM batch AS b
			WHERE b.i IN (SELECT i FROM claimed) OR NOT EXISTS (SELECT FROM %[2]s AS m
				WHERE m.consumer_group = $1 AND m.topic = b.ot AND m.partition = b.op AND m."offset" = b.oo)
		), written AS (
			INSERT INTO %[3]s (%[4]s, %[5]s) SELECT k, v FROM fresh ORDER BY i %[6]s
		)
		SELECT count(*) FROM fresh`, typ, st.retries, table, key, payload, onConflict, guard)
	st.markRetries = fmt.Sprintf(`WITH u AS (
			SELECT * FROM unnest($4::text[], $5::integer[], $6::bigint[], $7::boolean[]) WITH ORDINALITY AS u(ot, op, oo, retry, i)
			WHERE %[2]s
		), marked AS (
			INSERT INTO %[1]s (consumer_group, topic, partition, "offset")
			SELECT DISTINCT $1::text, ot, op, oo FROM u WHERE retry
			ON CONFLICT DO NOTHING
		)
		SELECT coalesce(array_agg(u.i), '{}')::bigint[] FROM u JOIN %[1]s AS m
			ON m.consumer_group = $1 AND m.topic = u.ot AND m.partition = u.op AND m."offset" = u.oo
		WHERE m.done`, st.retries, guard)
	st.advance = fmt.Sprintf(`WITH advanced AS (
			UPDATE %[1]s AS o SET next_offset = $4, updated_at = now()
			WHERE o.consumer_group = $1 AND o.topic = $2 AND o.partition = $3 AND o.next_offset = $8
			RETURNING 1
		), marked AS (
			UPDATE %[2]s AS m SET done = true FROM unnest($5::text[], $6::integer[], $7::bigint[]) AS u(ot, op, oo)
			WHERE m.consumer_group = $1 AND m.topic = u.ot AND m.partition = u.op AND m."offset" = u.oo AND NOT m.done
			AND EXISTS (SELECT FROM advanced)
		)
		SELECT count(*) FROM advanced`,
		st.offsets, st.retries)
	st.read = fmt.Sprintf(`SELECT o.topic, o.partition, o.next_offset FROM %s AS o
		JOIN unnest($2::text[], $3::integer[]) AS u(t, p) ON o.topic = u.t AND o.partition = u.p
		WHERE o.consumer_group = $1`, st.offsets)
	return st, nil
}

// createTables creates the offsets and retries tables when they are missing
// (under an advisory lock: concurrent CREATE TABLE IF NOT EXISTS can fail).
// Tables that exist are left alone, so a role without CREATE on the schema
// works once a DBA created them.
func createTables(ctx context.Context, pool *pgxpool.Pool, st *txStatements) error {
	var missing bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass($1) IS NULL OR to_regclass($2) IS NULL`, st.offsets, st.retries).Scan(&missing); err != nil {
		return fmt.Errorf("postgres sink: look for the offsets tables: %w", err)
	}
	if !missing {
		return nil
	}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, st.offsets); err != nil {
			return err
		}
		for _, ddl := range []string{
			fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
				consumer_group text NOT NULL,
				topic text NOT NULL,
				partition integer NOT NULL,
				next_offset bigint NOT NULL,
				updated_at timestamptz NOT NULL DEFAULT now(),
				PRIMARY KEY (consumer_group, topic, partition))`, st.offsets),
			fmt.Sprintf(`COMMENT ON TABLE %s IS 'Sluice ExactlyOnce delivery: the next offset to consume per consumer group and partition, written in the transactions that write the records'`, st.offsets),
			fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
				consumer_group text NOT NULL,
				topic text NOT NULL,
				partition integer NOT NULL,
				"offset" bigint NOT NULL,
				done boolean NOT NULL DEFAULT false,
				created_at timestamptz NOT NULL DEFAULT now(),
				PRIMARY KEY (consumer_group, topic, partition, "offset"))`, st.retries),
			fmt.Sprintf(`COMMENT ON TABLE %s IS 'Sluice ExactlyOnce delivery: source records with copies in retry topics; done once one copy was written or dead-lettered'`, st.retries),
		} {
			if _, err := tx.Exec(ctx, ddl); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("postgres sink: create %s and %s (or have them created; docs/worker.md has the DDL): %w", st.offsets, st.retries, err)
	}
	return nil
}

// Offsets implements Transactional.
func (p *Postgres) Offsets(ctx context.Context, group string, parts map[string][]int32) (map[string]map[int32]int64, error) {
	if p.tx == nil {
		return nil, errNotExactlyOnce
	}
	var topics []string
	var partitions []int32
	for t, ps := range parts {
		for _, part := range ps {
			topics = append(topics, t)
			partitions = append(partitions, part)
		}
	}
	rows, err := p.pool.Query(ctx, p.tx.read, group, topics, partitions)
	if err != nil {
		return nil, err
	}
	out := map[string]map[int32]int64{}
	var topic string
	var partition int32
	var next int64
	_, err = pgx.ForEachRow(rows, []any{&topic, &partition, &next}, func() error {
		if out[topic] == nil {
			out[topic] = map[int32]int64{}
		}
		out[topic][partition] = next
		return nil
	})
	return out, err
}

var errNotExactlyOnce = errors.New("postgres sink: opened without ExactlyOnce")

// Apply implements Transactional.
func (p *Postgres) Apply(ctx context.Context, group string, recs []*Record) ApplyResult {
	if p.tx == nil {
		return ApplyResult{Failed: len(recs), Err: failure.Transient(errNotExactlyOnce)}
	}
	if len(recs) == 0 {
		return ApplyResult{}
	}
	res, err := p.applyTx(ctx, group, recs)
	if err == nil {
		return res
	}
	if !rowMayBeTheCause(err) || len(recs) == 1 {
		return ApplyResult{Failed: len(recs), Err: classifyPG(err)}
	}
	// One row may have caused it (see Write): apply one by one, up to the
	// one that fails alone; the records after it are tried in the next call.
	var out ApplyResult
	for i := range recs {
		r := p.Apply(ctx, group, recs[i:i+1])
		out.Applied += r.Applied
		out.Duplicates += r.Duplicates
		if r.Err != nil {
			out.Failed, out.Err = r.Failed, r.Err
			return out
		}
	}
	return out
}

// applyTx runs the fence and the writes in one transaction and one round trip.
func (p *Postgres) applyTx(ctx context.Context, group string, recs []*Record) (ApplyResult, error) {
	first, last := recs[0].Rec, recs[len(recs)-1].Rec
	keys, vals := p.args(recs)
	ot, op, oo := origins(recs)
	var fresh int64
	err := p.fencedTx(ctx, group, first.Topic, first.Partition, first.Offset, p.tx.fenceApply, []any{last.Offset + 1},
		p.tx.apply, []any{keys, vals, ot, op, oo}, func(row pgx.Row) error { return row.Scan(&fresh) })
	var fenced *FencedError
	switch {
	case errors.As(err, &fenced):
		return ApplyResult{Failed: len(recs), Err: err}, nil
	case err != nil:
		return ApplyResult{}, err
	}
	return ApplyResult{Applied: len(recs), Duplicates: len(recs) - int(fresh)}, nil
}

func origins(recs []*Record) (topics []string, partitions []int32, offsets []int64) {
	topics, partitions, offsets = make([]string, len(recs)), make([]int32, len(recs)), make([]int64, len(recs))
	for i, r := range recs {
		topics[i], partitions[i], offsets[i] = r.Origin.Topic, r.Origin.Partition, r.Origin.Offset
	}
	return topics, partitions, offsets
}

// fencedTx runs, in one transaction sent in one round trip: the fence on the
// partition's offset row (fence, with arguments group, topic, partition, first,
// then fenceArgs), then body (arguments group, topic, partition, then
// bodyArgs; it must do nothing unless the fence wrote the row, see guard),
// whose one row goes to scan. When the stored offset is past first, it
// returns a *FencedError and nothing was written.
func (p *Postgres) fencedTx(ctx context.Context, group, topic string, partition int32, first int64,
	fence string, fenceArgs []any, body string, bodyArgs []any, scan func(pgx.Row) error) error {
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(fence, append([]any{group, topic, partition, first}, fenceArgs...)...)
	b.Queue(p.tx.stored, group, topic, partition)
	b.Queue(body, append([]any{group, topic, partition}, bodyArgs...)...)
	b.Queue("COMMIT")
	var passed bool
	var stored int64
	if err := runBatch(ctx, conn, b, func(br pgx.BatchResults) error {
		if _, err := br.Exec(); err != nil {
			return err
		}
		if err := br.QueryRow().Scan(&passed); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if err := br.QueryRow().Scan(&stored); errors.Is(err, pgx.ErrNoRows) {
			stored = -1
		} else if err != nil {
			return err
		}
		if err := scan(br.QueryRow()); err != nil {
			return err
		}
		_, err := br.Exec()
		return err
	}); err != nil {
		return err
	}
	if !passed {
		return &FencedError{Topic: topic, Partition: partition, Stored: stored, Tried: first}
	}
	return nil
}

// runBatch sends a batch, reads its results with read and rolls back (so the
// connection is reusable) when anything failed.
func runBatch(ctx context.Context, conn *pgxpool.Conn, b *pgx.Batch, read func(pgx.BatchResults) error) error {
	br := conn.SendBatch(ctx, b)
	err := read(br)
	if closeErr := br.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		rollback(ctx, conn)
	}
	return err
}

func rollback(ctx context.Context, conn *pgxpool.Conn) {
	if conn.Conn().PgConn().TxStatus() == 'I' {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, _ = conn.Exec(ctx, "ROLLBACK") // on failure Release drops the connection
}

// PrepareParks implements Transactional.
func (p *Postgres) PrepareParks(ctx context.Context, group string, recs []*Record, retry []bool) ([]bool, error) {
	if p.tx == nil {
		return nil, errNotExactlyOnce
	}
	first := recs[0].Rec
	ot, op, oo := origins(recs)
	var doneIdx []int64
	if err := p.fencedTx(ctx, group, first.Topic, first.Partition, first.Offset, p.tx.fencePark, nil,
		p.tx.markRetries, []any{ot, op, oo, retry}, func(row pgx.Row) error { return row.Scan(&doneIdx) }); err != nil {
		return nil, err
	}
	done := make([]bool, len(recs))
	for _, i := range doneIdx {
		done[i-1] = true // WITH ORDINALITY counts from 1
	}
	return done, nil
}

// Advance implements Transactional.
func (p *Postgres) Advance(ctx context.Context, group, topic string, partition int32, from, next int64, deadLettered []Origin) error {
	if p.tx == nil {
		return errNotExactlyOnce
	}
	ot := make([]string, len(deadLettered))
	op := make([]int32, len(deadLettered))
	oo := make([]int64, len(deadLettered))
	for i, o := range deadLettered {
		ot[i], op[i], oo[i] = o.Topic, o.Partition, o.Offset
	}
	var advanced int64
	if err := p.pool.QueryRow(ctx, p.tx.advance, group, topic, partition, next, ot, op, oo, from).Scan(&advanced); err != nil {
		return err
	}
	if advanced == 0 {
		stored := int64(-1)
		if err := p.pool.QueryRow(ctx, p.tx.stored, group, topic, partition).Scan(&stored); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		return &FencedError{Topic: topic, Partition: partition, Stored: stored, Tried: from}
	}
	return nil
}

// InitOffsets implements Transactional.
func (p *Postgres) InitOffsets(ctx context.Context, group string, starts map[string]map[int32]int64) (map[string]map[int32]int64, error) {
	if p.tx == nil {
		return nil, errNotExactlyOnce
	}
	var topics []string
	var partitions []int32
	var offsets []int64
	parts := map[string][]int32{}
	for t, ps := range starts {
		for part, next := range ps {
			topics, partitions, offsets = append(topics, t), append(partitions, part), append(offsets, next)
			parts[t] = append(parts[t], part)
		}
	}
	if _, err := p.pool.Exec(ctx, p.tx.init, group, topics, partitions, offsets); err != nil {
		return nil, err
	}
	return p.Offsets(ctx, group, parts)
}
