package replay

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-dev/sluice/internal/testkafka"
)

// coordinatorNotThereYet makes kfake answer the next n FindCoordinator
// requests for a group the way a cluster that just started does
// (COORDINATOR_NOT_AVAILABLE) and returns how many it answered so.
func coordinatorNotThereYet(c *testkafka.Cluster, n int32) *atomic.Int32 {
	var answered atomic.Int32
	c.Fake.ControlKey(int16(kmsg.FindCoordinator), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.Fake.KeepControl()
		r := req.(*kmsg.FindCoordinatorRequest)
		if r.CoordinatorType != 0 || answered.Load() >= n {
			return nil, nil, false
		}
		answered.Add(1)
		resp := r.ResponseKind().(*kmsg.FindCoordinatorResponse)
		resp.Version = r.Version
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		for _, key := range append(r.CoordinatorKeys, r.CoordinatorKey) {
			if key == "" {
				continue
			}
			rc := kmsg.NewFindCoordinatorResponseCoordinator()
			rc.Key, rc.NodeID, rc.ErrorCode = key, -1, kerr.CoordinatorNotAvailable.Code
			resp.Coordinators = append(resp.Coordinators, rc)
		}
		return resp, nil, true
	})
	return &answered
}

// TestGroupReadsWaitForTheCoordinator: a replay started on a cluster whose
// group coordinator is not there yet (a fresh cluster, a coordinator moving)
// waits for it instead of failing its run. The CI saw a redrive fail so on a
// real 3-node cluster that had just started.
func TestGroupReadsWaitForTheCoordinator(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const unavailable = 3

	t.Run("redrive", func(t *testing.T) {
		c := testkafka.NewFake(t)
		f := newDLQ(t, c, "coordinator", 30)
		parts := snapshotOf(t, c, f.dlq, nil, time.Time{})
		answered := coordinatorNotThereYet(c, unavailable)
		d := &Redrive{Conn: conn(c), Group: "sluice-replay." + f.dlq, TransactionalID: "sluice-replay." + f.dlq, Parts: parts,
			Select: Selection{MaxRedrives: 3}, Target: f.target, Kind: ToRetryTopic, By: "ns/coordinator"}
		got, err := d.Run(ctx)
		if err != nil {
			t.Fatalf("redrive: %v (after %d COORDINATOR_NOT_AVAILABLE answers)", err, answered.Load())
		}
		if got.Done+got.Parked != int64(f.n) || answered.Load() != unavailable {
			t.Fatalf("progress %+v of %d records, %d of %d unavailable answers given", got, f.n, answered.Load(), unavailable)
		}
	})

	t.Run("committed offsets", func(t *testing.T) {
		c := testkafka.NewFake(t)
		c.CreateTopics(t, 1, 0, nil, "orders")
		var offs kadm.Offsets
		offs.Add(kadm.Offset{Topic: "orders", Partition: 0, At: 5, LeaderEpoch: -1, Metadata: `{"done":5}`})
		if _, err := c.Admin(t).CommitOffsets(ctx, "g", offs); err != nil {
			t.Fatal(err)
		}
		answered := coordinatorNotThereYet(c, unavailable)
		for _, read := range []struct {
			name string
			at   func(adm *kadm.Client) (int64, error)
		}{
			{"CommittedOffsets", func(adm *kadm.Client) (int64, error) {
				got, err := CommittedOffsets(ctx, adm, "g", "orders")
				return got[0], err
			}},
			{"ReprocessPositions", func(adm *kadm.Client) (int64, error) {
				got, _, err := ReprocessPositions(ctx, adm, "g")
				o, _ := got.Lookup("orders", 0)
				return o.At, err
			}},
		} {
			answered.Store(0)
			at, err := read.at(c.Admin(t)) // a new client: no coordinator cached
			if err != nil || at != 5 || answered.Load() != unavailable {
				t.Errorf("%s: offset %d, %v; want 5 after %d unavailable answers (%d given)", read.name, at, err, unavailable, answered.Load())
			}
		}
	})
}
