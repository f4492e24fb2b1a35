package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// demoSink is where the demo's pipelines deliver, and how the demo counts
// what arrived there.
type demoSink interface {
	// yaml is the pipeline's spec.sink block.
	yaml(pipeline string) string
	// prepare creates what the pipeline's sink needs (a Secret, a table).
	prepare(ctx context.Context, c client.Client, pipeline string) error
	// collect returns what arrived per idempotency key and the effects per
	// record id; redeliveries says whether the sink can count redeliveries.
	collect(ctx context.Context, pipeline string) (keys map[string]keyStats, effects map[string]int, redeliveries bool, err error)
}

// httpSink is the demo's receiver.
type httpSink struct{ recv *receiver }

func (s httpSink) yaml(pipeline string) string {
	return sinkYAML(sinkHTTP, s.recv.URL(pipeline), "", "")
}

func (httpSink) prepare(context.Context, client.Client, string) error { return nil }

func (s httpSink) collect(_ context.Context, pipeline string) (map[string]keyStats, map[string]int, bool, error) {
	keys, effects := s.recv.snapshot(pipeline)
	return keys, effects, true, nil
}

// logSink: the workers print each record to stdout, which the pod runner
// keeps in each pod's stdout.log.
type logSink struct{ podsDir string }

func (logSink) yaml(string) string { return sinkYAML(sinkLog, "", "", "") }

func (logSink) prepare(context.Context, client.Client, string) error { return nil }

func (s logSink) collect(_ context.Context, pipeline string) (map[string]keyStats, map[string]int, bool, error) {
	keys, effects := map[string]keyStats{}, map[string]int{}
	files, err := filepath.Glob(filepath.Join(s.podsDir, demoNamespace, pipeline+"-worker-*", "stdout.log"))
	if err != nil {
		return nil, nil, false, err
	}
	for _, f := range files {
		if err := readLogSinkLines(f, keys, effects); err != nil {
			return nil, nil, false, err
		}
	}
	return keys, effects, true, nil
}

func readLogSinkLines(path string, keys map[string]keyStats, effects map[string]int) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var line struct {
			Key            string `json:"key"`
			IdempotencyKey string `json:"idempotencyKey"`
		}
		// A worker killed mid-write leaves a partial last line: not a delivery.
		if json.Unmarshal(sc.Bytes(), &line) != nil || line.IdempotencyKey == "" {
			continue
		}
		k := keys[line.IdempotencyKey]
		k.Deliveries++
		if k.Deliveries == 1 {
			k.Effect = line.Key
			effects[line.Key]++
		}
		keys[line.IdempotencyKey] = k
	}
	return sc.Err()
}

// postgresSink inserts into a table of its own in the user's database; the
// DSN reaches the workers as a Secret mounted as a file.
type postgresSink struct{ dsn string }

func pgTable(pipeline string) string { return "sluice_demo_" + strings.ReplaceAll(pipeline, "-", "_") }

func pgSecret(pipeline string) string { return pipeline + "-postgres" }

func (s postgresSink) yaml(pipeline string) string {
	return sinkYAML(sinkPostgres, "", pgSecret(pipeline), pgTable(pipeline))
}

func (s postgresSink) prepare(ctx context.Context, c client.Client, pipeline string) error {
	conn, err := pgx.Connect(ctx, s.dsn)
	if err != nil {
		return fmt.Errorf("--pg-dsn: %w", err)
	}
	defer func() { _ = conn.Close(ctx) }()
	t := pgx.Identifier{pgTable(pipeline)}.Sanitize()
	if _, err := conn.Exec(ctx, "DROP TABLE IF EXISTS "+t); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE "+t+" (id text PRIMARY KEY, payload jsonb NOT NULL)"); err != nil {
		return err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: pgSecret(pipeline), Namespace: demoNamespace},
		StringData: map[string]string{"dsn": s.dsn},
	}
	return c.Create(ctx, secret)
}

func (s postgresSink) collect(ctx context.Context, pipeline string) (map[string]keyStats, map[string]int, bool, error) {
	conn, err := pgx.Connect(ctx, s.dsn)
	if err != nil {
		return nil, nil, false, err
	}
	defer func() { _ = conn.Close(ctx) }()
	rows, err := conn.Query(ctx, "SELECT id, COALESCE(payload->>'id', '') FROM "+pgx.Identifier{pgTable(pipeline)}.Sanitize())
	if err != nil {
		return nil, nil, false, err
	}
	defer rows.Close()
	keys, effects := map[string]keyStats{}, map[string]int{}
	for rows.Next() {
		var key, id string
		if err := rows.Scan(&key, &id); err != nil {
			return nil, nil, false, err
		}
		keys[key] = keyStats{Deliveries: 1, Effect: id}
		effects[id]++
	}
	return keys, effects, false, rows.Err()
}
