package worker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/workerconfig"
)

// TestConsumerGroupProtocolSharesThePartitions: with consumer.groupProtocol
// Consumer the workers run a KIP-848 group (the broker's coordinator describes
// them as its members and assigns the partitions), a second worker gets some of
// the partitions (of the source or the retry topics: the broker's assignor
// decides) while the first keeps consuming, and every record reaches the
// sink.
func TestConsumerGroupProtocolSharesThePartitions(t *testing.T) {
	b := newBroker(t)
	b.createTopics(4, allTopics...)
	svc := newService(t, ok)
	cfg := b.rename(httpConfig(b.seeds, svc.srv.URL))
	cfg.Consumer.GroupProtocol = workerconfig.GroupProtocolConsumer
	b.produce("orders", 0, 400, nil)

	startWorker(t, cfg, nil)
	eventually(t, 30*time.Second, "the first worker consuming", func() bool { return len(svc.acceptedBodies()) > 0 })
	startWorker(t, cfg, nil)
	group := b.name("test.orders")
	eventually(t, 60*time.Second, "two members of the KIP-848 group, each with partitions", func() bool {
		// Kafka (and kfake) describe a KIP-848 group only with
		// ConsumerGroupDescribe: a classic client's group would not be found.
		described, err := b.admin.DescribeConsumerGroups(context.Background(), group)
		if err != nil {
			t.Logf("describe consumer group: %v", err)
			return false
		}
		g := described[group]
		if g.Err != nil || len(g.Members) != 2 {
			t.Logf("group %s: %v, %d members %+v", group, g.Err, len(g.Members), g.Members)
			return false
		}
		for _, m := range g.Members {
			n := 0 // the broker's assignment, over the source and retry topics
			for _, ps := range m.Assignment {
				n += len(ps)
			}
			if n == 0 {
				return false
			}
		}
		return true
	})
	b.produce("orders", 400, 800, nil)
	eventually(t, 60*time.Second, "every record delivered and committed", func() bool {
		return len(svc.acceptedBodies()) == 800 && sumCommitted(b.committed("test.orders"), "orders") == 800
	})
	for i := range 800 {
		if svc.acceptedBodies()[fmt.Sprintf("v-%d", i)] == 0 {
			t.Fatalf("v-%d never delivered", i)
		}
	}
}
