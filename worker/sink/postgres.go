package sink

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluice-dev/sluice/worker/failure"
)

// Postgres inserts records with INSERT ... ON CONFLICT (key) DO NOTHING, so a
// redelivered record has no effect: the idempotency key column must carry a
// unique constraint. A batch is one statement (unnest of two arrays), one round
// trip; when the database rejects the batch for its data, the records are
// inserted one by one to tell the poison pill from the rest.
type Postgres struct {
	pool   *pgxpool.Pool
	insert string
	bytea  bool
	// tx holds the statements of ExactlyOnce delivery (nil otherwise).
	tx *txStatements
	// risks are the durability settings found at start (DurabilityRisks).
	risks []string
}

// PostgresOptions name the table and columns.
type PostgresOptions struct {
	DSN, Table, KeyColumn, PayloadColumn string
	// ExactlyOnce stores the consumer's offsets in the database, in the
	// transaction that writes the rows (see Apply); the key column then needs
	// no unique constraint. Without it, the key column must have one: ON
	// CONFLICT (key) DO NOTHING is what makes a redelivery a no-op.
	ExactlyOnce bool
}

// NewPostgres connects and prepares the insert for the table's payload column type
// (jsonb, json, text, varchar or bytea).
func NewPostgres(ctx context.Context, o PostgresOptions) (*Postgres, error) {
	pool, err := pgxpool.New(ctx, o.DSN)
	if err != nil {
		return nil, fmt.Errorf("postgres sink: %w", err)
	}
	// The table is looked up as the inserts name it: quoted, so "Orders" is
	// Orders and not orders (to_regclass folds an unquoted name to lower case).
	path := strings.Split(o.Table, ".")
	table := pgx.Identifier(path).Sanitize()
	var typ string
	err = pool.QueryRow(ctx, `SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
		WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND NOT a.attisdropped`, table, o.PayloadColumn).Scan(&typ)
	if errors.Is(err, pgx.ErrNoRows) {
		pool.Close()
		return nil, fmt.Errorf("postgres sink: table %q has no column %q (or the table does not exist)", o.Table, o.PayloadColumn)
	}
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres sink: read column type of %s.%s: %w", o.Table, o.PayloadColumn, err)
	}
	var unique bool
	if err := pool.QueryRow(ctx, uniqueKeySQL, table, o.KeyColumn).Scan(&unique); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres sink: look for a unique index on %s.%s: %w", o.Table, o.KeyColumn, err)
	}
	if !unique && !o.ExactlyOnce {
		pool.Close()
		return nil, fmt.Errorf("postgres sink: column %q of %q has no unique index: AtLeastOnce delivery needs one "+
			"(INSERT ... ON CONFLICT (%s) DO NOTHING is what makes a redelivered record a no-op); add one, or use ExactlyOnce",
			o.KeyColumn, o.Table, o.KeyColumn)
	}
	key := pgx.Identifier{o.KeyColumn}.Sanitize()
	payload := pgx.Identifier{o.PayloadColumn}.Sanitize()
	onConflict := ""
	if unique {
		onConflict = fmt.Sprintf("ON CONFLICT (%s) DO NOTHING", key)
	}
	p := &Postgres{
		pool:  pool,
		bytea: typ == "bytea",
		insert: fmt.Sprintf(`INSERT INTO %s (%s, %s) SELECT k, v FROM unnest($1::text[], $2::%s[]) AS u(k, v) %s`,
			table, key, payload, typ, onConflict),
	}
	if o.ExactlyOnce {
		if p.tx, err = prepareExactlyOnce(ctx, pool, path[:len(path)-1], table, key, payload, typ, onConflict); err != nil {
			pool.Close()
			return nil, err
		}
	}
	if p.risks, err = durabilityRisks(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return p, nil
}

// durabilityRisks lists the server settings under which PostgreSQL can
// acknowledge a commit and lose it later. Every guarantee rests on what the
// sink acknowledged staying: at-least-once commits the Kafka offset past a
// row the database may then forget (that record is lost), and exactly-once
// loses the offset with the row (the worker rewinds to it, see Apply) but
// cannot bring back what a crash took before the worker noticed.
func durabilityRisks(ctx context.Context, pool *pgxpool.Pool) ([]string, error) {
	var syncCommit, fsync string
	if err := pool.QueryRow(ctx, `SELECT current_setting('synchronous_commit'), current_setting('fsync')`).Scan(&syncCommit, &fsync); err != nil {
		return nil, fmt.Errorf("postgres sink: read the durability settings: %w", err)
	}
	var risks []string
	if syncCommit == "off" {
		risks = append(risks, "synchronous_commit=off: a crash of the database server loses the last commits it acknowledged (up to 3 × wal_writer_delay)")
	}
	if fsync == "off" {
		risks = append(risks, "fsync=off: a crash of the database host can lose or corrupt any acknowledged commit")
	}
	return risks, nil
}

// DurabilityRisks says which settings let the database forget acknowledged
// commits (empty: none found). A failover to an asynchronous standby has the
// same effect and can't be seen from here.
func (p *Postgres) DurabilityRisks() []string { return p.risks }

// uniqueKeySQL tells whether a column has a unique index of its own (what ON
// CONFLICT (column) needs).
const uniqueKeySQL = `SELECT EXISTS (SELECT FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
	WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indisvalid AND i.indnkeyatts = 1 AND i.indpred IS NULL AND a.attname = $2)`

func (p *Postgres) args(recs []*Record) (keys []string, payload any) {
	keys = make([]string, len(recs))
	for i, r := range recs {
		keys[i] = r.IdempotencyKey()
	}
	if p.bytea {
		vals := make([][]byte, len(recs))
		for i, r := range recs {
			vals[i] = r.Rec.Value
		}
		return keys, vals
	}
	vals := make([]string, len(recs))
	for i, r := range recs {
		vals[i] = string(r.Rec.Value)
	}
	return keys, vals
}

// Write implements Sink. One statement writes the batch; when the server
// refuses it for what may be one row's doing (rowMayBeTheCause), the batch is
// written again row by row, so that each record gets its own outcome: the
// good ones are written, and only the row that fails alone is retried or
// dead-lettered, with its own error. (Failing the whole batch would walk every
// neighbour through the retry topics with the culprit, and dead-letter them
// with its error when the retries run out.)
func (p *Postgres) Write(ctx context.Context, recs []*Record) []error {
	keys, vals := p.args(recs)
	_, err := p.pool.Exec(ctx, p.insert, keys, vals)
	if err == nil {
		return make([]error, len(recs))
	}
	if !rowMayBeTheCause(err) || len(recs) == 1 {
		return Fill(len(recs), classifyPG(err))
	}
	errs := make([]error, len(recs))
	for i := range recs {
		errs[i] = p.Write(ctx, recs[i:i+1])[0]
		if errs[i] != nil && !rowMayBeTheCause(errs[i]) {
			// The database itself failed meanwhile: the rest fail with it
			// instead of each waiting for it.
			for j := i + 1; j < len(recs); j++ {
				errs[j] = errs[i]
			}
			break
		}
	}
	return errs
}

// isDataError: SQLSTATE classes 22 (data exception: invalid JSON, bad encoding)
// and 23 (integrity: NOT NULL, CHECK) are about the record, not the database.
func isDataError(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "22") || strings.HasPrefix(pgErr.Code, "23"))
}

// rowMayBeTheCause tells whether the server refused a statement for what one
// of its rows may have caused: its data (classes 22, 23), a trigger or
// routine that raised (P0, 09, 38, 39), a serialization failure or deadlock
// over the rows it touched (40), a row lock it could not get (55). Connection
// loss, a cancelled or timed-out statement (57), a server out of resources
// (53), a missing table or privilege (42), and errors that aren't the
// server's answer are the database's state: every row would fail alike.
func rowMayBeTheCause(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || len(pgErr.Code) < 2 {
		return false
	}
	switch pgErr.Code[:2] {
	case "22", "23", "P0", "09", "38", "39", "40", "55":
		return true
	}
	return false
}

func classifyPG(err error) error {
	if isDataError(err) {
		return failure.Poison(err)
	}
	// Connection loss, timeouts, serialization failures, a dropped table, too
	// many connections: not the record's fault.
	return failure.Transient(err)
}

// MaxBatch implements Sink.
func (p *Postgres) MaxBatch() int { return 0 }

// Ping implements Sink.
func (p *Postgres) Ping(ctx context.Context) error { return p.pool.Ping(ctx) }

// Close implements Sink.
func (p *Postgres) Close() error {
	p.pool.Close()
	return nil
}
