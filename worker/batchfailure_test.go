package worker

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/internal/workerconfig"
)

// TestAFailingRowDoesNotTakeItsBatchThroughTheRetryTopics: two flaky records
// (each fails its first two inserts, SQLSTATE 40001) in one batch of ten.
// The postgres sink writes a batch in one statement; when the server refuses
// it for a row, every other record must still be written once, from the
// source topic: only the flaky records go to a retry topic, nothing reaches
// the dead-letter topic. (When the batch failed as a whole, the eight good
// records walked the retry topics with the first flaky one, and exactly-once
// — whose trigger stops at the first failing row — dead-lettered all ten
// when the second flaky one used up the last retry topic.)
func TestAFailingRowDoesNotTakeItsBatchThroughTheRetryTopics(t *testing.T) {
	flaky := map[int]bool{2: true, 5: true}
	for _, mode := range []string{"AtLeastOnce", "ExactlyOnce"} {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			b := newBroker(t)
			b.createTopics(1, allTopics...)
			cfg := b.config()
			var count func() map[string]int
			if mode == "ExactlyOnce" {
				_, dsnFile, conn := eventsDB(t)
				cfg = exactlyOncePostgres(cfg, dsnFile)
				count = func() map[string]int { return countEvents(t, conn).perID }
				for i := range flaky {
					if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE SEQUENCE flaky_%d", i)); err != nil {
						t.Fatal(err)
					}
				}
			} else {
				dsnFile, conn := ordersDB(t)
				cfg.Sink = workerconfig.Sink{Postgres: &workerconfig.PostgresSink{DSNFile: dsnFile, Table: "orders", KeyColumn: "id", PayloadColumn: "payload"}}
				count = func() map[string]int { // orders has a primary key: one row per id
					n := map[string]int{}
					for id := range rowIDs(t, conn) {
						n[id] = 1
					}
					return n
				}
				for i := range flaky {
					if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE SEQUENCE flaky_%d", i)); err != nil {
						t.Fatal(err)
					}
				}
			}
			b.produce("orders", 0, 10, func(i int, r *kgo.Record) {
				if flaky[i] {
					r.Value = fmt.Appendf(nil, `{"id":"r-%d","n":%d,"flaky":"flaky_%d"}`, i, i, i)
					return
				}
				r.Value = fmt.Appendf(nil, `{"id":"r-%d","n":%d}`, i, i)
			})
			w := startWorker(t, cfg, nil)
			eventually(t, 30*time.Second, "all ten records written", func() bool { return len(count()) == 10 })
			eventually(t, 10*time.Second, "Kafka commits caught up", func() bool {
				return sumCommitted(b.committed("test.orders"), "orders") == 10
			})
			w.stop(t)

			for id, n := range count() {
				if n != 1 {
					t.Errorf("%s written %d times, want once", id, n)
				}
			}
			for _, topic := range []string{"orders.retry.1", "orders.retry.2", "orders.retry.3"} {
				for _, r := range b.readAll(topic) {
					if !strings.Contains(string(r.Value), `"flaky"`) {
						t.Errorf("good record %s went to %s with its neighbour (%s)", r.Value, topic, headerMap(r)[HeaderErrorMessage])
					}
				}
			}
			if dlq := b.readAll("orders.dlq"); len(dlq) > 0 {
				t.Errorf("%d records dead-lettered, want none; the first: %s (%s)", len(dlq), dlq[0].Value, headerMap(dlq[0])[HeaderErrorMessage])
			}
		})
	}
}
