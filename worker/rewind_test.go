package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/internal/replay"
	"github.com/sluice-dev/sluice/worker/sink"
)

// TestWorkersReadAgainFromARewind runs a rewind as the operator does (a
// StreamReplay of mode Rewind: the workers stop, the group is empty, each
// partition goes back to the first record at or after a time, in Kafka and,
// for ExactlyOnce with the postgres sink, in the database) between two runs
// of a worker, and checks that the second run hands the sink exactly the
// records after that time again, and nothing before it.
func TestWorkersReadAgainFromARewind(t *testing.T) {
	for _, tc := range []struct {
		name     string
		database bool
	}{
		{"the group's commits (AtLeastOnce, http sink)", false},
		{"the database's offsets (ExactlyOnce, postgres sink)", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			b := newBroker(t)
			b.createTopics(2, allTopics...)
			now := time.Now()
			point := now.Add(-time.Hour)
			b.produce("orders", 0, 100, func(i int, r *kgo.Record) {
				r.Value = fmt.Appendf(nil, `{"id":"r-%d","n":%d}`, i, i)
				r.Timestamp = now.Add(-2 * time.Hour) // 0-49 before the point, 50-99 after
				if i >= 50 {
					r.Timestamp = now.Add(-time.Minute)
				}
			})
			// written counts what the sink took, per record id.
			var written func() map[string]int
			cfg := b.config()
			var dsn string
			if tc.database {
				d, dsnFile, conn := eventsDB(t)
				dsn = d
				cfg = exactlyOncePostgres(cfg, dsnFile)
				written = func() map[string]int { return countEvents(t, conn).perID }
			} else {
				svc := newService(t, ok)
				cfg = b.rename(httpConfig(b.seeds, svc.srv.URL))
				written = func() map[string]int {
					out := map[string]int{}
					for body, n := range svc.acceptedBodies() {
						var v struct{ ID string }
						if err := json.Unmarshal([]byte(body), &v); err != nil {
							t.Errorf("body %q: %v", body, err)
						}
						out[v.ID] += n
					}
					return out
				}
			}
			total := func() int {
				n := 0
				for _, c := range written() {
					n += c
				}
				return n
			}
			group, topic := b.name("test.orders"), b.name("orders")

			first := startWorker(t, cfg, nil)
			eventually(t, 30*time.Second, "100 records written and committed", func() bool {
				return total() == 100 && sumCommitted(b.committed("test.orders"), "orders") == 100
			})
			first.stop(t)

			// The operator's steps (controllers/replayrewind.go).
			eventually(t, 30*time.Second, "the group empty", func() bool {
				stopped, _, err := replay.GroupStopped(ctx, b.admin, group)
				return err == nil && stopped
			})
			parts, err := replay.Snapshot(ctx, b.admin, []string{topic}, nil, point)
			if err != nil {
				t.Fatal(err)
			}
			committed, err := replay.CommittedOffsets(ctx, b.admin, group, topic)
			if err != nil {
				t.Fatal(err)
			}
			if tc.database {
				stored, exists, err := sink.StoredOffsets(ctx, dsn, "events", group, topic)
				if err != nil || !exists {
					t.Fatalf("stored offsets: %v (tables there: %v)", err, exists)
				}
				committed = stored
			}
			moves, kept := replay.RewindMoves(parts, committed)
			var again int64
			to := map[int32]int64{}
			for _, m := range moves {
				again += m.Again
				to[m.Partition] = m.To
			}
			if again != 50 || len(kept) != 0 {
				t.Fatalf("the rewind reads %d records again (moves %+v, kept %v), want the 50 after the point", again, moves, kept)
			}
			if tc.database {
				if err := sink.RewindStoredOffsets(ctx, dsn, "events", group, topic, to); err != nil {
					t.Fatal(err)
				}
			}
			if err := replay.CommitMoves(ctx, b.admin, group, topic, moves); err != nil {
				t.Fatal(err)
			}

			second := startWorker(t, cfg, nil)
			eventually(t, 30*time.Second, "the 50 records after the point written again", func() bool {
				return total() == 150 && sumCommitted(b.committed("test.orders"), "orders") == 100
			})
			second.stop(t)
			got := written()
			for i := range 100 {
				want := 1
				if i >= 50 {
					want = 2
				}
				if n := got[fmt.Sprintf("r-%d", i)]; n != want {
					t.Errorf("r-%d written %d times, want %d", i, n, want)
				}
			}
		})
	}
}
