package controllers

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// testKafka is an in-process Kafka of one test, so that tests that produce
// backlogs or break the cluster don't disturb the others.
type testKafka struct {
	cluster *kfake.Cluster
	adm     *kadm.Client
	client  *kgo.Client
}

func newKafka(t testing.TB, sourcePartitions int32, opts ...kfake.Opt) *testKafka {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(3), kfake.SeedTopics(sourcePartitions, "orders")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &testKafka{cluster: c, adm: kadm.NewClient(cl), client: cl}
}

// produce writes n records to each of partitions, stamped ts.
func (k *testKafka) produce(t testing.TB, topic string, partitions []int32, n int, ts time.Time) {
	t.Helper()
	var rs []*kgo.Record
	for _, p := range partitions {
		for i := range n {
			rs = append(rs, &kgo.Record{Topic: topic, Partition: p, Value: fmt.Appendf(nil, "r%d", i), Timestamp: ts})
		}
	}
	if err := k.client.ProduceSync(context.Background(), rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// commitToEnd commits group's offsets at the end of every partition of topic, as
// a consumer that caught up would.
func (k *testKafka) commitToEnd(t *testing.T, group, topic string) {
	t.Helper()
	ends, err := k.adm.ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.adm.CommitAllOffsets(context.Background(), group, ends.Offsets()); err != nil {
		t.Fatal(err)
	}
}

func (k *testKafka) topicConfig(t *testing.T, topic, key string) string {
	t.Helper()
	rcs, err := k.adm.DescribeTopicConfigs(context.Background(), topic)
	if err != nil || len(rcs) != 1 || rcs[0].Err != nil {
		return ""
	}
	for _, c := range rcs[0].Configs {
		if c.Key == key {
			return c.MaybeValue()
		}
	}
	return ""
}

// topicExists asks a fresh client (no metadata cache) whether topic exists.
func (k *testKafka) topicExists(t *testing.T, topic string) bool {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.cluster.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	d, err := kadm.NewClient(cl).ListTopics(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	td, ok := d[topic]
	return ok && td.Err == nil
}

func (k *testKafka) partitions(t *testing.T, topic string) int {
	t.Helper()
	d, err := k.adm.ListTopics(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	return len(d[topic].Partitions)
}
