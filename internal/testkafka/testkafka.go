// Package testkafka lets Kafka-touching tests run against either broker: the
// in-process kfake (the default) or a real Apache Kafka cluster named by
// $SLUICE_TEST_KAFKA (comma-separated bootstrap servers, e.g. from
// `hack/kafka.sh bootstrap`). It also names topics and groups uniquely (a real
// cluster is shared by every test of every run), creates topics and waits until
// every partition serves, and, for broker-failure tests, stops, kills and starts
// nodes of the hack/kafka.sh cluster and finds partition leaders.
package testkafka

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Environment variables.
const (
	// EnvBrokers holds the real cluster's bootstrap servers; empty means kfake.
	EnvBrokers = "SLUICE_TEST_KAFKA"
	// EnvControl is the path of hack/kafka.sh (default <module root>/hack/kafka.sh).
	EnvControl = "SLUICE_TEST_KAFKA_CTL"
	// EnvBrokerFailures=1 opts in to the broker-failure tests.
	EnvBrokerFailures = "SLUICE_TEST_BROKER_FAILURES"
)

// HowToRun says how to point the tests at a real cluster.
const HowToRun = "start one with `make kafka-up` and set " + EnvBrokers + "=$(hack/kafka.sh bootstrap)"

// Bootstrap returns the real cluster's bootstrap servers from $SLUICE_TEST_KAFKA,
// nil when it is unset or empty (the tests then use kfake).
func Bootstrap() []string {
	var out []string
	for _, s := range strings.Split(os.Getenv(EnvBrokers), ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Real reports whether the tests run against a real cluster.
func Real() bool { return len(Bootstrap()) > 0 }

// Name is "real Kafka" or "kfake", for messages.
func Name() string {
	if Real() {
		return "real Kafka"
	}
	return "kfake"
}

// Cluster is the broker a test runs against.
type Cluster struct {
	// Brokers are the bootstrap servers.
	Brokers []string
	// Fake is the in-process cluster, nil on a real one.
	Fake *kfake.Cluster
}

// Real reports whether c is a real cluster.
func (c *Cluster) Real() bool { return c.Fake == nil }

// Start returns the real cluster when $SLUICE_TEST_KAFKA is set, otherwise it
// starts a kfake with fakeOpts; cleanup closes it (a no-op for a real cluster).
// It is for TestMain and benchmarks; tests use New.
func Start(fakeOpts ...kfake.Opt) (c *Cluster, cleanup func(), err error) {
	if b := Bootstrap(); len(b) > 0 {
		return &Cluster{Brokers: b}, func() {}, nil
	}
	f, err := kfake.NewCluster(fakeOpts...)
	if err != nil {
		return nil, nil, fmt.Errorf("kfake: %w", err)
	}
	return &Cluster{Brokers: f.ListenAddrs(), Fake: f}, f.Close, nil
}

// New is Start for a test: a kfake is closed when the test ends.
func New(tb testing.TB, fakeOpts ...kfake.Opt) *Cluster {
	tb.Helper()
	c, cleanup, err := Start(fakeOpts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cleanup)
	return c
}

// NewFake always starts a kfake, for tests that need what only kfake has
// (fault injection, a broker that vanishes). Call FakeOnly first, so that a
// real-cluster run says why the test does not run there.
func NewFake(tb testing.TB, fakeOpts ...kfake.Opt) *Cluster {
	tb.Helper()
	f, err := kfake.NewCluster(fakeOpts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(f.Close)
	return &Cluster{Brokers: f.ListenAddrs(), Fake: f}
}

// FakeOnly skips a kfake-only test (one that injects faults with kfake.Fault)
// when the suite runs against a real cluster, saying so: it runs under
// `make test`, where $SLUICE_TEST_KAFKA is unset.
func FakeOnly(tb testing.TB, why string) {
	tb.Helper()
	if Real() {
		tb.Skipf("kfake-only (%s): runs under `make test` with %s unset, not against the real cluster", why, EnvBrokers)
	}
}

// Client is a kgo client for c with opts, closed when the test ends. Metadata
// is refreshed at most every 100 ms (kgo's default is 5 s), so that new topics
// and moved leaders are seen quickly.
func (c *Cluster) Client(tb testing.TB, opts ...kgo.Opt) *kgo.Client {
	tb.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.Brokers...), kgo.MetadataMinAge(100 * time.Millisecond)}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cl.Close)
	return cl
}

// Admin is an admin client for c, closed when the test ends.
func (c *Cluster) Admin(tb testing.TB) *kadm.Client {
	tb.Helper()
	return kadm.NewClient(c.Client(tb))
}

// NumBrokers is how many brokers the cluster's metadata lists.
func (c *Cluster) NumBrokers(tb testing.TB) int {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	brokers, err := c.Admin(tb).ListBrokers(ctx)
	if err != nil {
		tb.Fatalf("list brokers of %s: %v", Name(), err)
	}
	return len(brokers)
}

// ReplicationFactor is min(3, brokers): 3 on the 3-node cluster and on a
// 3-broker kfake, 1 on a single node.
func (c *Cluster) ReplicationFactor(tb testing.TB) int16 {
	tb.Helper()
	return int16(min(3, c.NumBrokers(tb)))
}

// CreateTopics creates topics with partitions, replication factor rf (0: the
// cluster's ReplicationFactor) and configs, and waits until every partition
// has a leader that answers ListOffsets (a real cluster takes a moment to
// elect them). On a real cluster the topics are deleted when the test passes;
// a failed test leaves them for inspection.
func (c *Cluster) CreateTopics(tb testing.TB, partitions int32, rf int16, configs map[string]string, topics ...string) {
	tb.Helper()
	if rf == 0 {
		rf = c.ReplicationFactor(tb)
	}
	adm := c.Admin(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := make(map[string]*string, len(configs))
	for k, v := range configs {
		cfg[k] = kadm.StringPtr(v)
	}
	resp, err := adm.CreateTopics(ctx, partitions, rf, cfg, topics...)
	if err != nil {
		tb.Fatalf("create topics %v: %v", topics, err)
	}
	for _, r := range resp.Sorted() {
		if r.Err != nil {
			tb.Fatalf("create topic %s: %v %s", r.Topic, r.Err, r.ErrMessage)
		}
	}
	if c.Real() {
		tb.Cleanup(func() {
			if tb.Failed() {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, _ = adm.DeleteTopics(ctx, topics...)
		})
	}
	if err := WaitServing(ctx, adm, partitions, topics...); err != nil {
		tb.Fatal(err)
	}
}

// WaitServing waits until each topic has partitions partitions whose leaders
// answer ListOffsets.
func WaitServing(ctx context.Context, adm *kadm.Client, partitions int32, topics ...string) error {
	var last error
	for {
		ends, err := adm.ListEndOffsets(ctx, topics...)
		if err == nil {
			err = ends.Error()
		}
		if err == nil {
			for _, t := range topics {
				if n := len(ends[t]); n != int(partitions) {
					err = fmt.Errorf("topic %s: %d of %d partitions serve", t, n, partitions)
					break
				}
			}
		}
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("topics %v not serving: %w", topics, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// UniqueTopic returns base followed by a short form of the test's name and a
// random suffix, e.g. "orders-TestSampleLag-3f9a1c": unique on a cluster
// shared between tests and runs, and still telling which test made it. Only
// [a-zA-Z0-9-] are added, so callers may derive names from it with "." (e.g.
// <topic>.retry.1, <topic>.dlq).
func UniqueTopic(tb testing.TB, base string) string {
	tb.Helper()
	return base + "-" + shortName(tb.Name()) + "-" + randomHex(3)
}

// UniqueGroup returns a unique consumer-group (or transactional) id, like
// UniqueTopic.
func UniqueGroup(tb testing.TB, base string) string {
	tb.Helper()
	return UniqueTopic(tb, base)
}

func shortName(name string) string {
	var b strings.Builder
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	s := strings.Trim(b.String(), "-")
	if len(s) > 48 {
		s = s[:48]
	}
	return s
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// OnEveryBroker waits until check accepts the response of every broker to req:
// a real cluster's brokers apply metadata and config changes each at its own
// moment, so a change one broker reports may still be unknown to the next one
// a client asks. It gives up when ctx ends. (kfake answers at once.)
func OnEveryBroker(ctx context.Context, cl *kgo.Client, req kmsg.Request, check func(kmsg.Response) error) error {
	var last error
	for {
		last = nil
		brokers, err := kadm.NewClient(cl).ListBrokers(ctx)
		if err != nil {
			last = err
		}
		for _, b := range brokers {
			resp, err := cl.Broker(int(b.NodeID)).Request(ctx, req)
			if err == nil {
				err = check(resp)
			}
			if err != nil {
				last = fmt.Errorf("broker %d: %w", b.NodeID, err)
				break
			}
		}
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return last
		case <-time.After(50 * time.Millisecond):
		}
	}
}
