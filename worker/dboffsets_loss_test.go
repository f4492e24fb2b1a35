package worker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestExactlyOncePostgresGoesBackWhenTheDatabaseLostCommits: the database
// acknowledged transactions and then lost them (synchronous_commit off and a
// crash, a failover to an asynchronous standby): their rows and the stored
// offset went back together, while the worker kept its partition and its
// position. Seen in an outside chaos run: the next chunk was accepted past
// the stored offset and the lost records were never written. The stored
// offset is the truth: the worker must go back to it and write them again.
func TestExactlyOncePostgresGoesBackWhenTheDatabaseLostCommits(t *testing.T) {
	ctx := context.Background()
	b := newBroker(t)
	b.createTopics(1, allTopics...)
	_, dsnFile, conn := eventsDB(t)
	cfg := exactlyOncePostgres(b.config(), dsnFile)
	value := func(i int, r *kgo.Record) {
		r.Partition = 0
		r.Value = fmt.Appendf(nil, `{"id":"r-%d","n":%d}`, i, i)
	}
	b.produce("orders", 0, 100, value)
	w := startWorker(t, cfg, nil)
	eventually(t, 30*time.Second, "100 rows", func() bool { return countEvents(t, conn).rows == 100 })

	// The database forgets the records from 60 on, offset included.
	for _, stmt := range []string{
		`DELETE FROM events WHERE (payload->>'n')::int >= 60`,
		fmt.Sprintf(`UPDATE sluice_offsets SET next_offset = 60 WHERE topic = '%s'`, b.name("orders")),
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	b.produce("orders", 100, 130, value)
	eventually(t, 30*time.Second, "130 rows", func() bool { return countEvents(t, conn).rows >= 130 })
	w.stop(t)

	got := countEvents(t, conn)
	for i := range 130 {
		if n := got.perID[fmt.Sprintf("r-%d", i)]; n != 1 {
			t.Errorf("r-%d written %d times, want once", i, n)
		}
	}
	if got.rows != 130 {
		t.Errorf("%d rows, want 130", got.rows)
	}
}
