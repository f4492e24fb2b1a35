package testkafka

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/sluice-dev/sluice/internal/modroot"
)

// BrokerFailures gates a broker-failure test: it needs the real 3-node cluster
// (hack/kafka.sh), stops and kills its nodes, and takes minutes, so it runs only
// when asked for with SLUICE_TEST_BROKER_FAILURES=1 (`make test-broker-failures`
// does that). Without the opt-in the test is skipped with a message saying how
// to run it; with it, a missing cluster, a cluster of fewer than 3 brokers or a
// missing hack/kafka.sh fails the test. It returns the cluster and its Control.
func BrokerFailures(tb testing.TB) (*Cluster, *Control) {
	tb.Helper()
	if os.Getenv(EnvBrokerFailures) != "1" {
		tb.Skipf("broker-failure test, opt-in: run it with `make test-broker-failures` "+
			"(or `make kafka-up`, then %s=1 %s=$(hack/kafka.sh bootstrap) go test -run '%s' ./%s)",
			EnvBrokerFailures, EnvBrokers, "^"+rootName(tb.Name())+"$", pkgDir())
	}
	brokers := Bootstrap()
	if len(brokers) == 0 {
		tb.Fatalf("%s=1 but %s is unset: broker-failure tests need the real 3-node cluster: %s",
			EnvBrokerFailures, EnvBrokers, HowToRun)
	}
	c := &Cluster{Brokers: brokers}
	ctl := NewControl(tb, c)
	if n := c.NumBrokers(tb); n < 3 {
		tb.Fatalf("broker-failure tests need 3 brokers, %s lists %d: `make kafka-down kafka-up` (KAFKA_BROKERS=3)", strings.Join(brokers, ","), n)
	}
	return c, ctl
}

// pkgDir is the working directory (the test's package) relative to the module
// root, "." when unknown.
func pkgDir() string {
	root, err := modroot.Find()
	if err != nil {
		return "."
	}
	wd, err := os.Getwd()
	if err != nil {
		return "."
	}
	rel, err := filepath.Rel(root, wd)
	if err != nil {
		return "."
	}
	return rel
}

func rootName(name string) string {
	if i := strings.IndexByte(name, '/'); i >= 0 {
		return name[:i]
	}
	return name
}

// Control stops and starts nodes of the hack/kafka.sh cluster. Node I has
// node.id (broker id) I. Nodes it stopped are started again when the test ends,
// so the shared cluster is whole for the next test.
type Control struct {
	tb      testing.TB
	script  string
	cluster *Cluster
	admin   *kadm.Client

	mu      sync.Mutex
	stopped map[int]bool
}

// NewControl finds hack/kafka.sh ($SLUICE_TEST_KAFKA_CTL, else
// <module root>/hack/kafka.sh) for cluster c.
func NewControl(tb testing.TB, c *Cluster) *Control {
	tb.Helper()
	script := os.Getenv(EnvControl)
	if script == "" {
		root, err := modroot.Find()
		if err != nil {
			tb.Fatal(err)
		}
		script = filepath.Join(root, "hack", "kafka.sh")
	}
	if _, err := os.Stat(script); err != nil {
		tb.Fatalf("the cluster control script: %v (set %s)", err, EnvControl)
	}
	ctl := &Control{tb: tb, script: script, cluster: c, admin: c.Admin(tb), stopped: map[int]bool{}}
	tb.Cleanup(ctl.restoreAll)
	return ctl
}

func (c *Control) run(args ...string) error {
	start := time.Now()
	cmd := exec.Command(c.script, args...)
	out, err := cmd.CombinedOutput()
	c.tb.Logf("hack/kafka.sh %s: %v (%s)", strings.Join(args, " "), time.Since(start).Round(10*time.Millisecond), strings.TrimSpace(lastLine(out)))
	if err != nil {
		return fmt.Errorf("hack/kafka.sh %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

func lastLine(b []byte) string {
	s := strings.TrimRight(string(b), "\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// Stop stops node i gracefully (SIGTERM: a controlled shutdown moves its
// leaderships away and takes it out of every ISR first).
func (c *Control) Stop(i int) {
	c.tb.Helper()
	c.mark(i, true)
	if err := c.run("stop-node", fmt.Sprint(i)); err != nil {
		c.tb.Fatal(err)
	}
}

// Kill SIGKILLs node i: its leaderships move once its session times out (3 s
// on the hack/kafka.sh cluster).
func (c *Control) Kill(i int) {
	c.tb.Helper()
	c.mark(i, true)
	if err := c.run("stop-node", fmt.Sprint(i), "--kill"); err != nil {
		c.tb.Fatal(err)
	}
}

// Start starts node i and waits until it is unfenced and serving.
func (c *Control) Start(i int) {
	c.tb.Helper()
	if err := c.run("start-node", fmt.Sprint(i)); err != nil {
		c.tb.Fatal(err)
	}
	c.mark(i, false)
}

func (c *Control) mark(i int, stopped bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped[i] = stopped
}

// restoreAll starts every node this Control stopped and did not start again.
func (c *Control) restoreAll() {
	c.mu.Lock()
	var nodes []int
	for i, s := range c.stopped {
		if s {
			nodes = append(nodes, i)
		}
	}
	c.mu.Unlock()
	slices.Sort(nodes)
	for _, i := range nodes {
		if err := c.run("start-node", fmt.Sprint(i)); err != nil {
			c.tb.Errorf("restoring node %d after the test: %v", i, err)
		}
	}
}

// LeaderOf returns the broker id (= node index) leading topic's partition, as
// a fresh Metadata request reports it.
func (c *Control) LeaderOf(topic string, partition int32) (int32, error) {
	p, err := c.partitionMetadata(topic, partition)
	if err != nil {
		return -1, err
	}
	if p.Err != nil {
		return -1, fmt.Errorf("topic %s partition %d: %w", topic, partition, p.Err)
	}
	return p.Leader, nil
}

// ISR returns the in-sync replicas of topic's partition.
func (c *Control) ISR(topic string, partition int32) ([]int32, error) {
	p, err := c.partitionMetadata(topic, partition)
	if err != nil {
		return nil, err
	}
	return p.ISR, p.Err
}

// partitionMetadata reads a partition's metadata with a fresh Metadata
// request, trying again for a few seconds when the request fails: the first
// request on a connection to a node that just restarted can end in EOF.
func (c *Control) partitionMetadata(topic string, partition int32) (kadm.PartitionDetail, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		td, err := c.admin.ListTopics(ctx, topic)
		cancel()
		if err == nil {
			d, ok := td[topic]
			switch {
			case !ok:
				return kadm.PartitionDetail{}, fmt.Errorf("topic %s not in the metadata", topic)
			case d.Err != nil:
				return kadm.PartitionDetail{}, fmt.Errorf("topic %s: %w", topic, d.Err)
			}
			p, ok := d.Partitions[partition]
			if !ok {
				return kadm.PartitionDetail{}, fmt.Errorf("topic %s partition %d not in the metadata", topic, partition)
			}
			return p, nil
		}
		if time.Now().After(deadline) {
			return kadm.PartitionDetail{}, fmt.Errorf("metadata of %s: %w", topic, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ActiveController returns the id of the active KRaft controller.
func (c *Control) ActiveController() (int32, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := c.admin.BrokerMetadata(ctx)
	if err != nil {
		return -1, err
	}
	return m.Controller, nil
}
