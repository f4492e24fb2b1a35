package worker

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-dev/sluice/internal/testkafka"
	"github.com/sluice-dev/sluice/internal/workerconfig"
)

// A record that fails and whose retry copy the broker refuses is read again
// from its partition; the records after it in its lane (its key in Key mode,
// its partition in Partition mode) must not have taken effect in the meantime,
// or it lands after them. The failed record's copy is refused once (a
// non-retriable error, so the producer gives up at once); the record then
// succeeds when read again, before any later record of its key.
func TestARefusedCopyKeepsTheLaterRecordsOfItsLaneBehind(t *testing.T) {
	testkafka.FakeOnly(t, "refuses the retry copy with kfake.Fault")
	for _, tc := range []struct {
		ordering string
		keys     int
	}{
		{workerconfig.OrderingKey, 4},
		{workerconfig.OrderingPartition, 1}, // one key: the whole partition is the lane
	} {
		t.Run(tc.ordering, func(t *testing.T) {
			b := newBroker(t)
			b.createTopics(1, allTopics...)
			o := newOrderWatch()
			const n, failing = 200, 8 // the failing record is early in the first round
			var mu sync.Mutex
			tries := map[int]int{}
			svc := watchedService(t, o, 2*time.Millisecond, func(_ string, seq int) int {
				mu.Lock()
				defer mu.Unlock()
				tries[seq]++
				if seq == failing && tries[seq] == 1 {
					return http.StatusServiceUnavailable
				}
				return http.StatusOK
			})
			refused := make(chan struct{}, 1)
			b.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: b.name("orders.retry.1"), Err: kerr.InvalidRecord,
				When: func(kmsg.Request) bool {
					select {
					case refused <- struct{}{}:
					default:
					}
					return true
				}})
			b.produceKeyed("orders", n, tc.keys, nil)
			cfg := concurrentConfig(b.httpConfig(svc.srv.URL), tc.ordering, 8)
			if tc.ordering == workerconfig.OrderingPartition {
				cfg.Processing.MaxInFlight = 0
			}
			startWorker(t, cfg, nil)

			eventually(t, 30*time.Second, "every record delivered", func() bool { return o.count() == n })
			eventually(t, 10*time.Second, "everything committed", func() bool {
				return sumCommitted(b.committed("test.orders"), "orders") == n
			})
			select {
			case <-refused:
			default:
				t.Fatal("the broker was never asked for the retry copy: the test did not exercise a refused copy")
			}
			if got := len(b.readAll("orders.retry.1")); got != 0 {
				t.Errorf("%d records in the retry topic, want none (the one copy was refused)", got)
			}
			mu.Lock()
			if tries[failing] != 2 {
				t.Errorf("the failing record was tried %d times, want 2 (failed, then read again)", tries[failing])
			}
			mu.Unlock()
			o.mu.Lock()
			defer o.mu.Unlock()
			if len(o.overtaken) > 0 {
				t.Errorf("records took effect after later records of their lane: %v", o.overtaken[:min(5, len(o.overtaken))])
			}
		})
	}
}
