package demo

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// broker is the demo's Kafka: franz-go's kfake, in this process, three
// brokers listening on loopback (kfake binds 127.0.0.1), so the worker
// processes and any client the user runs (kcat, a kgo program) reach it.
// Nothing is written to disk.
type broker struct {
	cluster *kfake.Cluster
	addrs   []string
	client  *kgo.Client
	admin   *kadm.Client
}

func startBroker() (*broker, error) {
	// Three brokers: the retry and dead-letter topics get the API's default
	// replication factor of 3.
	c, err := kfake.NewCluster(kfake.NumBrokers(3))
	if err != nil {
		return nil, fmt.Errorf("kfake: %w", err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...),
		kgo.MetadataMinAge(100*time.Millisecond),
		kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		c.Close()
		return nil, err
	}
	return &broker{cluster: c, addrs: c.ListenAddrs(), client: cl, admin: kadm.NewClient(cl)}, nil
}

// createTopic creates a source topic; the operator provisions only retry and
// dead-letter topics, never the source.
func (b *broker) createTopic(ctx context.Context, topic string, partitions int) error {
	resp, err := b.admin.CreateTopic(ctx, int32(partitions), 3, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	return nil
}

func (b *broker) Close() {
	b.client.Close()
	b.cluster.Close()
}
