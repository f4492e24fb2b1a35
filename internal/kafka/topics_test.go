package kafka

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// newFake starts an in-process Kafka (3 brokers) and returns an admin client.
func newFake(t *testing.T) (*kfake.Cluster, *kadm.Client, *kgo.Client) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(3))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return c, kadm.NewClient(cl), cl
}

// freshAdmin is a new client with an empty metadata cache.
func freshAdmin(t *testing.T, c *kfake.Cluster) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

func createTopic(t *testing.T, adm *kadm.Client, topic string, partitions int32) {
	t.Helper()
	if _, err := adm.CreateTopic(context.Background(), partitions, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
}

func topicConfigs(t *testing.T, adm *kadm.Client, topic string) map[string]string {
	t.Helper()
	rcs, err := adm.DescribeTopicConfigs(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, c := range rcs[0].Configs {
		out[c.Key] = c.MaybeValue()
	}
	return out
}

func TestEnsureTopicsCreatesWithPolicyAndConvergesDrift(t *testing.T) {
	ctx := context.Background()
	c, adm, _ := newFake(t)
	createTopic(t, adm, "orders", 6)
	policy := TopicPolicy{ReplicationFactor: 3, Configs: PolicyConfigs(2, 3_600_000)}
	topics := []string{"orders.retry.1", "orders.retry.2", "orders.dlq"}

	rep, err := EnsureTopics(ctx, adm, "orders", topics, policy)
	if err != nil {
		t.Fatal(err)
	}
	if rep.SourcePartitions != 6 || len(rep.Created) != 3 {
		t.Fatalf("report = %+v", rep)
	}
	// A fresh client reads back: kgo caches metadata (MetadataMinAge), and this
	// client looked the topics up while they were missing.
	check := freshAdmin(t, c)
	details, err := check.ListTopics(ctx, topics...)
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range topics {
		d := details[topic]
		if len(d.Partitions) != 6 || d.Partitions.NumReplicas() != 3 {
			t.Errorf("%s: %d partitions, RF %d; want 6, 3", topic, len(d.Partitions), d.Partitions.NumReplicas())
		}
		got := topicConfigs(t, check, topic)
		for k, v := range policy.Configs {
			if got[k] != v {
				t.Errorf("%s: %s = %q, want %q", topic, k, got[k], v)
			}
		}
	}

	// Drift: someone changes a config and the source grows. Re-running converges
	// the config and raises partitions; nothing is recreated.
	if _, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: kadm.StringPtr("1000")}}, "orders.dlq"); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.UpdatePartitions(ctx, 8, "orders"); err != nil {
		t.Fatal(err)
	}
	rep, err = EnsureTopics(ctx, adm, "orders", topics, policy)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Created) != 0 || len(rep.ConfigsConverged) != 1 || len(rep.PartitionsIncreased) != 3 {
		t.Fatalf("second pass report = %+v", rep)
	}
	if got := topicConfigs(t, adm, "orders.dlq")["retention.ms"]; got != "3600000" {
		t.Errorf("retention.ms after converge = %q", got)
	}

	// A third pass is a no-op.
	rep, err = EnsureTopics(ctx, adm, "orders", topics, policy)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Created)+len(rep.ConfigsConverged)+len(rep.PartitionsIncreased)+len(rep.NotDecreased) != 0 {
		t.Fatalf("idempotent pass changed something: %+v", rep)
	}

	// A policy asking for fewer partitions never decreases them.
	policy.Partitions = 2
	rep, err = EnsureTopics(ctx, adm, "orders", topics, policy)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.NotDecreased) != 3 {
		t.Fatalf("NotDecreased = %v", rep.NotDecreased)
	}
}

func TestEnsureTopicsFailures(t *testing.T) {
	ctx := context.Background()
	_, adm, _ := newFake(t)
	createTopic(t, adm, "orders", 3)

	_, err := EnsureTopics(ctx, adm, "missing", []string{"missing.dlq"}, TopicPolicy{ReplicationFactor: 1})
	if Classify(err) != ProblemTopicNotFound {
		t.Errorf("missing source: %v classified %d", err, Classify(err))
	}
	_, err = EnsureTopics(ctx, adm, "orders", []string{"orders.dlq"}, TopicPolicy{ReplicationFactor: 5})
	if Classify(err) != ProblemReplicationFactor {
		t.Errorf("RF 5 on 3 brokers: %v classified %d", err, Classify(err))
	}

	// Nobody listens on this port.
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers("127.0.0.1:1")}, adminOpts()...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = EnsureTopics(short, kadm.NewClient(cl), "orders", []string{"orders.dlq"}, TopicPolicy{ReplicationFactor: 1})
	if Classify(err) != ProblemUnreachable {
		t.Errorf("unreachable: %v classified %d", err, Classify(err))
	}
}

func TestDeleteTopicsIgnoresMissing(t *testing.T) {
	ctx := context.Background()
	c, adm, _ := newFake(t)
	createTopic(t, adm, "orders.dlq", 1)
	if err := DeleteTopics(ctx, adm, "orders.dlq", "never.existed"); err != nil {
		t.Fatal(err)
	}
	d, err := freshAdmin(t, c).ListTopics(ctx, "orders.dlq")
	if err != nil {
		t.Fatal(err)
	}
	if td, ok := d["orders.dlq"]; ok && td.Err == nil {
		t.Error("orders.dlq still exists")
	}
}
