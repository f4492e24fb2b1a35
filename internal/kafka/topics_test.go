package kafka

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-dev/sluice/internal/testkafka"
)

// The tests in this package run against kfake (3 brokers, in process) or, with
// SLUICE_TEST_KAFKA set, against a real cluster (`make test-kafka`); see
// internal/testkafka. Every test names its topics and groups uniquely, since a
// real cluster is shared between tests and runs, and waits where a real cluster
// is only eventually consistent (metadata and configs reach each broker a
// moment after the controller commits them).

// testCluster returns the test's cluster and an admin client for it.
func testCluster(t *testing.T) (*testkafka.Cluster, *kadm.Client, *kgo.Client) {
	t.Helper()
	c := testkafka.New(t, kfake.NumBrokers(3))
	cl := c.Client(t)
	return c, kadm.NewClient(cl), cl
}

// freshAdmin is a new client with an empty metadata cache.
func freshAdmin(t *testing.T, c *testkafka.Cluster) *kadm.Client {
	t.Helper()
	return c.Admin(t)
}

func createTopic(t *testing.T, c *testkafka.Cluster, topic string, partitions int32) {
	t.Helper()
	c.CreateTopics(t, partitions, 0, nil, topic)
}

// waitPartitions waits until every broker reports n partitions of topic (n = 0:
// the topic is gone).
func waitPartitions(t *testing.T, c *testkafka.Cluster, topic string, n int) {
	t.Helper()
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err := testkafka.OnEveryBroker(ctx, c.Client(t), req, func(r kmsg.Response) error {
		resp := r.(*kmsg.MetadataResponse)
		got := 0
		if len(resp.Topics) == 1 && resp.Topics[0].ErrorCode == 0 {
			got = len(resp.Topics[0].Partitions)
		}
		if got != n {
			return fmt.Errorf("%s: %d partitions, want %d", topic, got, n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// waitConfig waits until every broker describes topic's key as value.
func waitConfig(t *testing.T, c *testkafka.Cluster, topic, key, value string) {
	t.Helper()
	req := kmsg.NewPtrDescribeConfigsRequest()
	res := kmsg.NewDescribeConfigsRequestResource()
	res.ResourceType = kmsg.ConfigResourceTypeTopic
	res.ResourceName = topic
	res.ConfigNames = []string{key}
	req.Resources = append(req.Resources, res)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err := testkafka.OnEveryBroker(ctx, c.Client(t), req, func(r kmsg.Response) error {
		resp := r.(*kmsg.DescribeConfigsResponse)
		if len(resp.Resources) != 1 || resp.Resources[0].ErrorCode != 0 {
			return fmt.Errorf("describe %s: %v", topic, resp.Resources)
		}
		for _, cfg := range resp.Resources[0].Configs {
			if cfg.Name == key {
				if cfg.Value != nil && *cfg.Value == value {
					return nil
				}
				return fmt.Errorf("%s %s = %s, want %q", topic, key, deref(cfg.Value), value)
			}
		}
		return fmt.Errorf("%s: no %s", topic, key)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

func TestEnsureTopicsCreatesWithPolicyAndConvergesDrift(t *testing.T) {
	ctx := context.Background()
	c, adm, _ := testCluster(t)
	source := testkafka.UniqueTopic(t, "orders")
	createTopic(t, c, source, 6)
	rf := c.ReplicationFactor(t) // 3 on kfake and on the 3-node cluster
	policy := TopicPolicy{ReplicationFactor: rf, Configs: PolicyConfigs(int32(min(2, rf)), 3_600_000)}
	topics := []string{source + ".retry.1", source + ".retry.2", source + ".dlq"}
	dlq := topics[2]
	t.Cleanup(func() { _, _ = DeleteTopics(context.Background(), adm, append(topics, source)...) })

	rep, err := EnsureTopics(ctx, adm, source, topics, policy)
	if err != nil {
		t.Fatal(err)
	}
	if rep.SourcePartitions != 6 || len(rep.Created) != 3 {
		t.Fatalf("report = %+v", rep)
	}
	// A fresh client reads back: kgo caches metadata (MetadataMinAge), and this
	// client looked the topics up while they were missing.
	check := freshAdmin(t, c)
	if err := testkafka.WaitServing(ctx, check, 6, topics...); err != nil {
		t.Fatal(err)
	}
	for _, topic := range topics {
		waitPartitions(t, c, topic, 6)
	}
	details, err := check.ListTopics(ctx, topics...)
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range topics {
		d := details[topic]
		if len(d.Partitions) != 6 || d.Partitions.NumReplicas() != int(rf) {
			t.Errorf("%s: %d partitions, RF %d; want 6, %d", topic, len(d.Partitions), d.Partitions.NumReplicas(), rf)
		}
		if c.Real() {
			// Every replica is on a distinct broker and in sync.
			for p, pd := range d.Partitions {
				if len(pd.ISR) != int(rf) || len(slices.Compact(slices.Sorted(slices.Values(pd.Replicas)))) != int(rf) {
					t.Errorf("%s[%d]: replicas %v, ISR %v; want %d distinct, all in sync", topic, p, pd.Replicas, pd.ISR, rf)
				}
			}
		}
		for k, v := range policy.Configs {
			waitConfig(t, c, topic, k, v)
		}
	}
	if c.Real() {
		// The broker stores them as topic configs (not defaults that happen to match).
		rcs, err := check.DescribeTopicConfigs(ctx, dlq)
		if err != nil {
			t.Fatal(err)
		}
		for _, cfg := range rcs[0].Configs {
			if _, ok := policy.Configs[cfg.Key]; ok && cfg.Source.String() != "DYNAMIC_TOPIC_CONFIG" {
				t.Errorf("%s %s: source %s, want DYNAMIC_TOPIC_CONFIG", dlq, cfg.Key, cfg.Source)
			}
		}
	}

	// Drift: someone changes a config and the source grows. Re-running converges
	// the config and raises partitions; nothing is recreated.
	if _, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: kadm.StringPtr("1000")}}, dlq); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.UpdatePartitions(ctx, 8, source); err != nil {
		t.Fatal(err)
	}
	waitConfig(t, c, dlq, "retention.ms", "1000")
	waitPartitions(t, c, source, 8)
	rep, err = EnsureTopics(ctx, adm, source, topics, policy)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Created) != 0 || len(rep.ConfigsConverged) != 1 || len(rep.PartitionsIncreased) != 3 {
		t.Fatalf("second pass report = %+v", rep)
	}
	waitConfig(t, c, dlq, "retention.ms", "3600000")
	for _, topic := range topics {
		waitPartitions(t, c, topic, 8)
	}

	// A third pass is a no-op.
	rep, err = EnsureTopics(ctx, adm, source, topics, policy)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Created)+len(rep.ConfigsConverged)+len(rep.PartitionsIncreased)+len(rep.NotDecreased) != 0 {
		t.Fatalf("idempotent pass changed something: %+v", rep)
	}

	// A policy asking for fewer partitions never decreases them.
	policy.Partitions = 2
	rep, err = EnsureTopics(ctx, adm, source, topics, policy)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.NotDecreased) != 3 {
		t.Fatalf("NotDecreased = %v", rep.NotDecreased)
	}

	// A different replication factor is reported, not changed.
	other := policy
	other.ReplicationFactor = rf%3 + 1
	rep, err = EnsureTopics(ctx, adm, source, topics, other)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.ReplicationDiffers) != 3 {
		t.Fatalf("ReplicationDiffers = %v", rep.ReplicationDiffers)
	}
}

func TestEnsureTopicsFailures(t *testing.T) {
	ctx := context.Background()
	c, adm, _ := testCluster(t)
	source := testkafka.UniqueTopic(t, "orders")
	createTopic(t, c, source, 3)

	missing := testkafka.UniqueTopic(t, "missing")
	_, err := EnsureTopics(ctx, adm, missing, []string{missing + ".dlq"}, TopicPolicy{ReplicationFactor: 1})
	if Classify(err) != ProblemTopicNotFound {
		t.Errorf("missing source: %v classified %d", err, Classify(err))
	}
	n := c.NumBrokers(t)
	_, err = EnsureTopics(ctx, adm, source, []string{source + ".dlq"}, TopicPolicy{ReplicationFactor: int16(n + 2)})
	if Classify(err) != ProblemReplicationFactor {
		t.Errorf("RF %d on %d brokers: %v classified %d", n+2, n, err, Classify(err))
	}

	// Nobody listens on this port.
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers("127.0.0.1:1")}, adminOpts()...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = EnsureTopics(short, kadm.NewClient(cl), source, []string{source + ".dlq"}, TopicPolicy{ReplicationFactor: 1})
	if Classify(err) != ProblemUnreachable {
		t.Errorf("unreachable: %v classified %d", err, Classify(err))
	}
}

func TestDeleteTopicsIgnoresMissing(t *testing.T) {
	ctx := context.Background()
	c, adm, _ := testCluster(t)
	dlq := testkafka.UniqueTopic(t, "orders") + ".dlq"
	createTopic(t, c, dlq, 1)
	deleted, err := DeleteTopics(ctx, adm, dlq, testkafka.UniqueTopic(t, "never-existed"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(deleted, []string{dlq}) {
		t.Errorf("deleted %v, want only %s (the other never existed)", deleted, dlq)
	}
	waitPartitions(t, c, dlq, 0)
}
