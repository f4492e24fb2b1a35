package testbroker

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// 127.0.0.2 is a loopback address other than kfake's own 127.0.0.1, so the
// test shows that the broker listens on, and advertises, the address it is given.
const otherLoopback = "127.0.0.2"

func TestBrokerListensOnAndAdvertisesTheGivenHost(t *testing.T) {
	c, err := Start(otherLoopback, 0, kfake.SeedTopics(2, "orders"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	addr, err := Addr(c)
	if err != nil {
		t.Fatal(err)
	}
	if host, _, _ := net.SplitHostPort(addr); host != otherLoopback {
		t.Fatalf("broker listens on %s, want host %s", addr, otherLoopback)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics("orders"), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	// Clients connect to the advertised address after the first metadata
	// request: it must be the given host, not kfake's 127.0.0.1.
	meta, err := kadm.NewClient(cl).BrokerMetadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(meta.Brokers) != 1 || meta.Brokers[0].Host != otherLoopback {
		t.Fatalf("advertised brokers %+v, want one on %s", meta.Brokers, otherLoopback)
	}

	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "orders", Value: []byte("hello")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	fetches := cl.PollFetches(ctx)
	if err := fetches.Err(); err != nil {
		t.Fatal(err)
	}
	if recs := fetches.Records(); len(recs) != 1 || string(recs[0].Value) != "hello" {
		t.Fatalf("consumed %v, want the one record produced", recs)
	}
}

func TestStartRefusesAHostName(t *testing.T) {
	if c, err := Start("localhost", 0); err == nil {
		c.Close()
		t.Fatal("Start(localhost) succeeded, want an error: pods can't resolve names")
	}
}
