package replay

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/internal/testkafka"
)

func TestRewindMovesOnlyGoBack(t *testing.T) {
	at := func(v int64) *int64 { return &v }
	parts := []Partition{
		{Partition: 0, Start: 10, End: 30}, // committed 25: back to 10
		{Partition: 1, Start: 10, End: 30}, // committed 10: already there
		{Partition: 2, Start: 10, End: 30}, // committed 4: moving would skip 4..9
		{Partition: 3, Start: 10, End: 30}, // no commit: goes to 10
		{Partition: 4, Start: 30, End: 30}, // point past the end, committed 30
	}
	moves, kept := RewindMoves(parts, map[int32]int64{0: 25, 1: 10, 2: 4, 4: 30})
	want := []Move{{Partition: 0, From: at(25), To: 10, Again: 15}, {Partition: 3, To: 10, Again: 20}}
	if d := cmp.Diff(want, moves); d != "" {
		t.Errorf("moves (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]int32{1, 2, 4}, kept); d != "" {
		t.Errorf("kept (-want +got):\n%s", d)
	}
}

// TestRewindWaitsForAnEmptyGroupAndSetsItsOffsets: a group with a member is
// not stopped (and the answer names the member); once it leaves, the rewind
// reads its position and sets the new one.
func TestRewindWaitsForAnEmptyGroupAndSetsItsOffsets(t *testing.T) {
	ctx := context.Background()
	c := testkafka.New(t)
	adm := c.Admin(t)
	topic, group := testkafka.UniqueTopic(t, "rewind"), testkafka.UniqueGroup(t, "rewind")
	c.CreateTopics(t, 2, 0, nil, topic)
	prod := c.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for i := range 20 {
		if err := prod.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: int32(i % 2), Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	// A group that does not exist has no members (on real Kafka its
	// coordinator may need a moment to load first).
	eventuallyStopped(t, adm, group)
	member := c.Client(t, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.InstanceID("slot-0"), kgo.DisableAutoCommit())
	read := 0
	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for read < 20 && pctx.Err() == nil {
		read += member.PollFetches(pctx).NumRecords()
	}
	if err := member.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatal(err)
	}
	stopped, who, err := GroupStopped(ctx, adm, group)
	if err != nil || stopped || !strings.Contains(who, "slot-0") {
		t.Fatalf("with a member: stopped %v, %q, %v; want not stopped, naming slot-0", stopped, who, err)
	}
	committed, err := CommittedOffsets(ctx, adm, group, topic)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[int32]int64{0: 10, 1: 10}, committed); d != "" {
		t.Fatalf("committed (-want +got):\n%s", d)
	}
	// A static member does not leave on close: it is removed, as the
	// operator does for a slot whose pod is gone.
	member.Close()
	if _, err := adm.LeaveGroup(ctx, kadm.LeaveGroup(group).InstanceIDs("slot-0")); err != nil {
		t.Fatal(err)
	}
	eventuallyStopped(t, adm, group)

	moves, _ := RewindMoves([]Partition{{Topic: topic, Partition: 0, Start: 3, End: 10}, {Topic: topic, Partition: 1, Start: 10, End: 10}}, committed)
	if err := CommitMoves(ctx, adm, group, topic, moves); err != nil {
		t.Fatal(err)
	}
	after, err := CommittedOffsets(ctx, adm, group, topic)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[int32]int64{0: 3, 1: 10}, after); d != "" {
		t.Errorf("after the rewind (-want +got):\n%s", d)
	}
}

func eventuallyStopped(t *testing.T, adm *kadm.Client, group string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		stopped, who, err := GroupStopped(context.Background(), adm, group)
		if err == nil && stopped {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s not empty within 30s: %s %v", group, who, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRewindWaitsForAKIP848Member: a member of a KIP-848 group, which
// DescribeGroups does not describe, also keeps the group from being stopped.
func TestRewindWaitsForAKIP848Member(t *testing.T) {
	ctx := context.Background()
	c := testkafka.New(t)
	adm := c.Admin(t)
	topic, group := testkafka.UniqueTopic(t, "rewind848"), testkafka.UniqueGroup(t, "rewind848")
	c.CreateTopics(t, 2, 0, nil, topic)
	assigned := make(chan struct{}, 1)
	member := c.Client(t, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.Balancers(kgo.StickyBalancer()), kgo.ServerSideBalancer(),
		kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) {
			select {
			case assigned <- struct{}{}:
			default:
			}
		}))
	go func() {
		for !member.PollFetches(ctx).IsClientClosed() {
		}
	}()
	select {
	case <-assigned:
	case <-time.After(time.Minute):
		t.Fatal("the KIP-848 member got no assignment within a minute")
	}
	stopped, who, err := GroupStopped(ctx, adm, group)
	if err != nil || stopped || !strings.Contains(who, "with 1 members") {
		t.Fatalf("with a KIP-848 member: stopped %v, %q, %v; want not stopped, naming it", stopped, who, err)
	}
	member.Close()
	eventuallyStopped(t, adm, group)
}
