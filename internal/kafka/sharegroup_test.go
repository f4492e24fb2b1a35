package kafka

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-dev/sluice/internal/testkafka"
)

// TestEnsureShareGroupSetsAndRepairsTheGroupConfigs: the configs are set on
// a group that does not exist yet, a second run changes nothing, and a config
// changed by hand is put back (and named).
func TestEnsureShareGroupSetsAndRepairsTheGroupConfigs(t *testing.T) {
	c := testkafka.New(t, kfake.NumBrokers(1))
	cl := c.Client(t)
	_, _, group := names(t)
	ctx := context.Background()
	want := ShareGroupSettings{StartFrom: "Earliest", RecordLock: 45 * time.Second, DeliveryCountLimit: 7}

	changed, err := EnsureShareGroup(ctx, cl, group, want)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(changed, ",") != "share.auto.offset.reset,share.delivery.count.limit,share.record.lock.duration.ms" {
		t.Errorf("first run changed %v, want all three", changed)
	}
	// On a real cluster a group config reaches every broker through the
	// metadata log, so a describe right after the change may see the old
	// state: wait until reads keep agreeing.
	visible := func(name, value string) {
		t.Helper()
		agreeing := 0
		var have map[string]string
		for deadline := time.Now().Add(10 * time.Second); agreeing < 5; time.Sleep(50 * time.Millisecond) {
			var err error
			if have, err = groupConfigs(ctx, cl, group); err != nil {
				t.Fatal(err)
			}
			if have[name] == value {
				agreeing++
			} else {
				agreeing = 0
			}
			if time.Now().After(deadline) {
				t.Fatalf("group configs %v: %s never read %s", have, name, value)
			}
		}
	}
	visible("share.auto.offset.reset", "earliest")
	visible("share.record.lock.duration.ms", "45000")
	visible("share.delivery.count.limit", "7")
	if changed, err := EnsureShareGroup(ctx, cl, group, want); err != nil || len(changed) != 0 {
		t.Errorf("second run changed %v (%v), want nothing", changed, err)
	}

	setGroupConfig(t, cl, group, "share.delivery.count.limit", "2")
	visible("share.delivery.count.limit", "2")
	if changed, err := EnsureShareGroup(ctx, cl, group, want); err != nil || strings.Join(changed, ",") != "share.delivery.count.limit" {
		t.Errorf("after a hand edit changed %v (%v), want share.delivery.count.limit", changed, err)
	}
}

func setGroupConfig(t *testing.T, cl *kgo.Client, group, name, value string) {
	t.Helper()
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType, res.ResourceName = kmsg.ConfigResourceTypeGroupConfig, group
	cfg := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
	cfg.Name, cfg.Op, cfg.Value = name, kmsg.IncrementalAlterConfigOpSet, kmsg.StringPtr(value)
	res.Configs = append(res.Configs, cfg)
	req.Resources = append(req.Resources, res)
	if _, err := req.RequestWith(context.Background(), cl); err != nil {
		t.Fatal(err)
	}
}

// TestCheckShareGroups: a cluster that offers share groups passes; an
// ApiVersions answer without ShareFetch, or with share.version at 0, is
// refused with what to do.
func TestCheckShareGroups(t *testing.T) {
	c := testkafka.New(t, kfake.NumBrokers(1))
	if err := CheckShareGroups(context.Background(), c.Client(t)); err != nil {
		t.Errorf("a cluster with share groups: %v", err)
	}
	withKeys := func(keys ...int16) *kmsg.ApiVersionsResponse {
		r := kmsg.NewPtrApiVersionsResponse()
		for _, k := range keys {
			ak := kmsg.NewApiVersionsResponseApiKey()
			ak.ApiKey = k
			r.ApiKeys = append(r.ApiKeys, ak)
		}
		return r
	}
	if err := shareSupport(withKeys(0, 1, 3)); !errors.Is(err, ErrShareGroupsUnsupported) || !strings.Contains(err.Error(), "ShareFetch") {
		t.Errorf("no ShareFetch: %v", err)
	}
	off := withKeys(0, 78)
	f := kmsg.NewApiVersionsResponseFinalizedFeature()
	f.Name, f.MaxVersionLevel = "share.version", 0
	off.FinalizedFeatures = append(off.FinalizedFeatures, f)
	if err := shareSupport(off); !errors.Is(err, ErrShareGroupsUnsupported) || !strings.Contains(err.Error(), "share.version") {
		t.Errorf("share.version 0: %v", err)
	}
	off.FinalizedFeatures[0].MaxVersionLevel = 1
	if err := shareSupport(off); err != nil {
		t.Errorf("share.version 1: %v", err)
	}
}

// TestSampleMeasuresAShareGroupsLag: a share group's lag is the broker's
// count of records not yet acknowledged: all of them before a member reads,
// none once one has accepted them all; its members are counted.
func TestSampleMeasuresAShareGroupsLag(t *testing.T) {
	// A short share heartbeat, as hack/kafka.sh starts the real cluster.
	c := testkafka.New(t, kfake.NumBrokers(1), kfake.BrokerConfigs(map[string]string{"group.share.heartbeat.interval.ms": "100"}))
	topic, dlq, group := names(t)
	c.CreateTopics(t, 2, 0, nil, topic, dlq)
	cl := manualClient(t, c)
	produce(t, cl, topic, 0, 30, time.Now())
	produce(t, cl, topic, 1, 20, time.Now())
	if _, err := EnsureShareGroup(context.Background(), cl, group, ShareGroupSettings{StartFrom: "Earliest", RecordLock: 30 * time.Second, DeliveryCountLimit: 5}); err != nil {
		t.Fatal(err)
	}
	w := Watch{Group: group, Topic: topic, DeadLetterTopic: dlq, Share: true}

	o := observe(t, c, w)
	if o.Err != nil {
		t.Fatal(o.Err)
	}
	if lag := totalLag(o); lag != 50 {
		t.Errorf("before any member read: lag %d, want 50 (measured from startFrom)", lag)
	}

	member := c.Client(t, kgo.ShareGroup(group), kgo.ConsumeTopics(topic))
	got := 0
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for got < 50 && ctx.Err() == nil {
		fs := member.PollRecords(ctx, 100)
		fs.EachRecord(func(r *kgo.Record) { r.Ack(kgo.AckAccept); got++ })
	}
	if err := member.FlushAcks(ctx); err != nil {
		t.Fatal(err)
	}
	observeUntil(t, c, w, func(o Observation) error {
		if o.Err != nil {
			return o.Err
		}
		if lag := totalLag(o); lag != 0 || o.Members != 1 {
			return errors.New("lag " + itoa(lag) + ", members " + itoa(int64(o.Members)) + "; want 0 and 1")
		}
		return nil
	})
}

// totalLag reads an observation's lag as the operator does: End − Committed,
// from Start where nothing is committed (startFrom Earliest).
func totalLag(o Observation) int64 {
	var n int64
	for _, p := range o.Partitions {
		from := p.Committed
		if from < 0 {
			from = p.Start
		}
		n += p.End - from
	}
	return n
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestShareGroupTimingsAreSetOnlyWhenGiven: the session timeout and
// heartbeat interval are the share group's configs, written when the spec
// sets them (within Kafka's default group.share.* bounds here) and left to
// the broker when it does not.
func TestShareGroupTimingsAreSetOnlyWhenGiven(t *testing.T) {
	c := testkafka.New(t, kfake.NumBrokers(1))
	cl := c.Client(t)
	_, _, group := names(t)
	ctx := context.Background()
	base := ShareGroupSettings{StartFrom: "Latest", RecordLock: 30 * time.Second, DeliveryCountLimit: 5}
	if _, ok := base.Configs()["share.heartbeat.interval.ms"]; ok {
		t.Fatalf("unset timings are written: %v", base.Configs())
	}
	want := base
	want.SessionTimeout, want.HeartbeatInterval = 50*time.Second, 6*time.Second
	changed, err := EnsureShareGroup(ctx, cl, group, want)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(changed, ","), "share.heartbeat.interval.ms,share.record.lock.duration.ms,share.session.timeout.ms") {
		t.Errorf("changed %v, want the timings among them", changed)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		have, err := groupConfigs(ctx, cl, group)
		if err != nil {
			t.Fatal(err)
		}
		if have["share.heartbeat.interval.ms"] == "6000" && have["share.session.timeout.ms"] == "50000" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("group configs %v: the timings never read 6000 and 50000", have)
		}
	}
}
