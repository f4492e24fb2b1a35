package kafka

import (
	"context"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Watch is what a pipeline asks the cluster to observe on every poll.
type Watch struct {
	Group           string
	Topic           string
	DeadLetterTopic string
	// Share is true for a share group (KIP-932): its lag comes from
	// DescribeShareGroupOffsets, its members from DescribeShareGroups.
	Share bool
	// NextGen is true for a KIP-848 consumer group: its members come from
	// ConsumerGroupDescribe (DescribeGroups does not describe it).
	NextGen bool
	// Interval is how often the pipeline wants a sample; the cluster polls at the
	// shortest interval any of its watches asks for, batching every watch into
	// the same requests.
	Interval time.Duration
}

// Cluster is one shared client of a Kafka cluster plus the poll loop that
// samples every watched group on it.
type Cluster struct {
	key     string
	brokers []string
	client  *kgo.Client
	admin   *kadm.Client
	onObs   func(user string, o Observation)

	mu      sync.Mutex
	users   map[string]struct{} // guarded by the pool's lock
	watches map[string]Watch
	wake    chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}
}

func newCluster(key string, brokers []string, cl *kgo.Client, onObs func(string, Observation)) *Cluster {
	ctx, cancel := context.WithCancel(context.Background())
	c := &Cluster{
		key:     key,
		brokers: brokers,
		client:  cl,
		admin:   kadm.NewClient(cl),
		onObs:   onObs,
		users:   map[string]struct{}{},
		watches: map[string]Watch{},
		wake:    make(chan struct{}, 1),
		cancel:  cancel,
		done:    make(chan struct{}),
	}
	go c.run(ctx)
	return c
}

// Admin is the cluster's admin client.
func (c *Cluster) Admin() *kadm.Client { return c.admin }

// Client is the cluster's client, for requests kadm has no helper for.
func (c *Cluster) Client() *kgo.Client { return c.client }

// Brokers are the bootstrap servers the client was built with.
func (c *Cluster) Brokers() []string { return c.brokers }

// Watch starts (or changes) user's watch. A new or changed watch is sampled at
// once rather than at the next tick, so a new pipeline shows its lag quickly.
func (c *Cluster) Watch(user string, w Watch) {
	c.mu.Lock()
	old, had := c.watches[user]
	c.watches[user] = w
	c.mu.Unlock()
	if !had || old != w {
		c.poke()
	}
}

// Unwatch ends user's watch.
func (c *Cluster) Unwatch(user string) {
	c.mu.Lock()
	delete(c.watches, user)
	c.mu.Unlock()
}

func (c *Cluster) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *Cluster) close() {
	c.cancel()
	<-c.done
	c.client.Close()
}

// run polls on a fixed schedule (not "interval after the last poll ended"), so
// the time from a backlog appearing to its observation is at most one interval
// whatever a poll costs.
func (c *Cluster) run(ctx context.Context) {
	defer close(c.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	next := time.Now()
	for {
		watches, interval := c.snapshot()
		if len(watches) == 0 {
			timer.Reset(time.Hour)
		} else {
			timer.Reset(time.Until(next))
		}
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
			watches, interval = c.snapshot()
		case <-timer.C:
		}
		if len(watches) == 0 {
			continue
		}
		started := time.Now()
		next = started.Add(interval)
		for user, o := range c.sample(ctx, watches, interval) {
			if ctx.Err() != nil {
				return
			}
			c.onObs(user, o)
		}
		if now := time.Now(); next.Before(now) {
			next = now // a poll that outlasts the interval: poll again at once, never in a burst
		}
	}
}

func (c *Cluster) snapshot() (map[string]Watch, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	watches := make(map[string]Watch, len(c.watches))
	interval := time.Duration(0)
	for u, w := range c.watches {
		watches[u] = w
		if interval == 0 || (w.Interval > 0 && w.Interval < interval) {
			interval = w.Interval
		}
	}
	if interval <= 0 {
		interval = 2 * time.Second
	}
	return watches, interval
}

// adminOpts bound how long an admin request may hang on an unreachable or
// slow cluster, so that a reconcile reports the failure instead of blocking a
// worker of the controller.
func adminOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.ClientID("sluice-operator"),
		kgo.DialTimeout(5 * time.Second),
		kgo.RetryTimeout(10 * time.Second),
		kgo.MetadataMinAge(time.Second),
	}
}
