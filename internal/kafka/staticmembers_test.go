package kafka

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/internal/testkafka"
)

// TestRemoveStaticMembersTakesThemOutAtOnce: static members that stopped stay
// in the group (they don't leave, so that a restart rejoins without a
// rebalance); RemoveStaticMembers takes the named ones out, leaves the others,
// and is no error for a member that is not there. The sample lists the
// group's static members.
func TestRemoveStaticMembersTakesThemOutAtOnce(t *testing.T) {
	c := testkafka.New(t, kfake.NumBrokers(1))
	topic := testkafka.UniqueTopic(t, "static")
	group := testkafka.UniqueGroup(t, "static")
	c.CreateTopics(t, 3, c.ReplicationFactor(t), nil, topic)
	ctx := context.Background()
	ids := []string{"w-0", "w-1", "w-2"}
	var clients []*kgo.Client
	for _, id := range ids {
		cl := c.Client(t, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.InstanceID(id),
			kgo.SessionTimeout(60*time.Second), kgo.HeartbeatInterval(500*time.Millisecond))
		go func() {
			for !cl.PollFetches(ctx).IsClientClosed() {
			}
		}()
		clients = append(clients, cl)
	}
	adm := c.Admin(t)
	members := func() []string {
		t.Helper()
		described, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			// A new group's coordinator may still be loading (real Kafka).
			t.Logf("describe group %s: %v", group, err)
			return nil
		}
		if described[group].State != "Stable" {
			return nil
		}
		return staticMembers(described[group])
	}
	// Stable with all three for 3 s (six heartbeats): kgo's cooperative
	// balancer rebalances a second time after a member gave partitions up,
	// and a client closed while that JoinGroup is held waits for it (the CI
	// saw w-0 expire so, 60 s later).
	var stableSince time.Time
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		switch {
		case !slices.Equal(members(), ids):
			stableSince = time.Time{}
		case stableSince.IsZero():
			stableSince = time.Now()
		}
		if !stableSince.IsZero() && time.Since(stableSince) >= 3*time.Second {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("static members %v, want %v in a group stable for 3 s", members(), ids)
		}
	}
	// Stopped, as a worker pod that ended: a static member does not leave.
	for _, cl := range clients {
		cl.Close()
	}
	if have := members(); !slices.Equal(have, ids) {
		t.Fatalf("static members %v after they stopped, want all of %v still there", have, ids)
	}

	removed, err := RemoveStaticMembers(ctx, adm, group, "test: scaled down", "w-1", "w-2", "w-9")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []string{"w-1", "w-2"}) {
		t.Errorf("removed %v, want [w-1 w-2] (w-9 is not a member)", removed)
	}
	if again, err := RemoveStaticMembers(ctx, adm, group, "test: scaled down", "w-1"); err != nil || len(again) != 0 {
		t.Errorf("removing w-1 again: removed %v, err %v; want nothing and no error", again, err)
	}
	var have []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		described, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			t.Logf("describe group %s: %v", group, err)
		} else if have = staticMembers(described[group]); slices.Equal(have, []string{"w-0"}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("static members %v after removing w-1 and w-2, want [w-0]", have)
		}
	}
}
