// Command kfake-broker serves a one-broker, in-memory Kafka (franz-go's kfake)
// on an address pods can reach, for trying pipelines on the local cluster by
// hand:
//
//	go run ./hack/kfake-broker -addr 10.244.0.1 -port 9092 -topic orders:3 -produce orders:1000
//
// It runs until SIGINT or SIGTERM; its topics, records and group offsets live
// in memory and are gone when it stops.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/internal/testbroker"
)

// topicCount is a NAME:N flag value: a topic with N partitions, or N records
// to produce to a topic.
type topicCount struct {
	topic string
	n     int
}

func parseTopicCount(v string, defaultN int) (topicCount, error) {
	name, count, hasCount := strings.Cut(v, ":")
	tc := topicCount{topic: name, n: defaultN}
	if hasCount {
		n, err := strconv.Atoi(count)
		if err != nil || n < 1 {
			return tc, fmt.Errorf("%q: want NAME or NAME:N with N ≥ 1", v)
		}
		tc.n = n
	}
	if name == "" {
		return tc, fmt.Errorf("%q: empty topic name", v)
	}
	return tc, nil
}

type topicCounts struct {
	list     []topicCount
	defaultN int
}

func (t *topicCounts) String() string { return fmt.Sprint(t.list) }
func (t *topicCounts) Set(v string) error {
	tc, err := parseTopicCount(v, t.defaultN)
	if err == nil {
		t.list = append(t.list, tc)
	}
	return err
}

func main() {
	addr := flag.String("addr", "10.244.0.1", "IP address to listen on and advertise (the local cluster's bridge gateway)")
	port := flag.Int("port", 9092, "port to listen on; 0 picks a free one")
	topics := &topicCounts{defaultN: 3}
	flag.Var(topics, "topic", "NAME[:PARTITIONS] a topic to create at start (repeatable; 3 partitions by default)")
	produce := &topicCounts{defaultN: 1000}
	flag.Var(produce, "produce", "TOPIC[:N] produce N records (key k<i>, value record-<i>) once the broker is up (repeatable)")
	every := flag.Duration("every", 0, "with -produce: produce the same records again every interval")
	flag.Parse()
	if err := run(*addr, *port, topics.list, produce.list, *every); err != nil {
		fmt.Fprintln(os.Stderr, "kfake-broker:", err)
		os.Exit(1)
	}
}

func run(addr string, port int, topics, produce []topicCount, every time.Duration) error {
	opts := make([]kfake.Opt, 0, len(topics))
	for _, t := range topics {
		opts = append(opts, kfake.SeedTopics(int32(t.n), t.topic))
	}
	c, err := testbroker.Start(addr, port, opts...)
	if err != nil {
		return err
	}
	defer c.Close()
	bootstrap, err := testbroker.Addr(c)
	if err != nil {
		return err
	}
	fmt.Println("kfake broker on", bootstrap)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(produce) > 0 {
		if err := produceLoop(ctx, bootstrap, produce, every); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return nil
}

// produceLoop produces each -produce batch once, or every interval until ctx ends.
func produceLoop(ctx context.Context, bootstrap string, batches []topicCount, every time.Duration) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.AllowAutoTopicCreation())
	if err != nil {
		return err
	}
	defer cl.Close()
	seq := 0
	for {
		for _, b := range batches {
			records := make([]*kgo.Record, b.n)
			for i := range records {
				records[i] = &kgo.Record{Topic: b.topic, Key: fmt.Appendf(nil, "k%d", seq), Value: fmt.Appendf(nil, "record-%d", seq)}
				seq++
			}
			if err := cl.ProduceSync(ctx, records...).FirstErr(); err != nil {
				return fmt.Errorf("producing to %s: %w", b.topic, err)
			}
			fmt.Printf("produced %d records to %s\n", b.n, b.topic)
		}
		if every <= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(every):
		}
	}
}
