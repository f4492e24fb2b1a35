package kafka

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Pool shares one client per cluster and credentials among the pipelines that
// use them, so that 1,000 pipelines on one cluster hold one set of broker
// connections, not 1,000. Each pipeline ("user") holds at most one cluster; a
// cluster is closed when its last user releases it.
type Pool struct {
	// OnObservation receives every observation of every watch, from the
	// cluster's poll goroutine.
	onObservation func(user string, o Observation)
	// extraOpts are appended to every client's options (tests shorten timeouts).
	extraOpts []kgo.Opt

	mu       sync.Mutex
	clusters map[string]*Cluster // by connection key
	byUser   map[string]*Cluster
}

// NewPool returns an empty pool. onObservation is called with each watch's
// observation after every poll of its cluster.
func NewPool(onObservation func(user string, o Observation), extraOpts ...kgo.Opt) *Pool {
	return &Pool{
		onObservation: onObservation,
		extraOpts:     extraOpts,
		clusters:      map[string]*Cluster{},
		byUser:        map[string]*Cluster{},
	}
}

// Acquire returns the cluster client for conn and records that user holds it.
// A user that held another cluster (its spec changed brokers or credentials)
// releases that one, and its watch there ends.
func (p *Pool) Acquire(user string, conn Conn) (*Cluster, error) {
	key := conn.key()
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.byUser[user]; ok {
		if c.key == key {
			return c, nil
		}
		p.releaseLocked(user)
	}
	c, ok := p.clusters[key]
	if !ok {
		opts, err := conn.Opts()
		if err != nil {
			return nil, err
		}
		opts = append(opts, adminOpts()...)
		opts = append(opts, p.extraOpts...)
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			return nil, fmt.Errorf("kafka client: %w", err)
		}
		c = newCluster(key, conn.Brokers, cl, p.onObservation)
		p.clusters[key] = c
	}
	c.users[user] = struct{}{}
	p.byUser[user] = c
	return c, nil
}

// Release drops user's hold on its cluster (and its watch); the cluster's client
// is closed when nobody holds it.
func (p *Pool) Release(user string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.releaseLocked(user)
}

func (p *Pool) releaseLocked(user string) {
	c, ok := p.byUser[user]
	if !ok {
		return
	}
	delete(p.byUser, user)
	c.Unwatch(user)
	delete(c.users, user)
	if len(c.users) == 0 {
		delete(p.clusters, c.key)
		c.close()
	}
}

// Clusters is how many clients the pool holds open.
func (p *Pool) Clusters() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.clusters)
}

// Close closes every client.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.clusters {
		c.close()
	}
	p.clusters = map[string]*Cluster{}
	p.byUser = map[string]*Cluster{}
}

// key identifies a connection: the same brokers with the same credentials share
// a client. It is a hash so that credentials are not kept as map keys.
func (c Conn) key() string {
	var b []byte
	brokers := slices.Clone(c.Brokers)
	slices.Sort(brokers)
	for _, br := range brokers {
		b = fmt.Appendf(b, "broker:%s\x00", br)
	}
	if c.TLS != nil {
		b = fmt.Appendf(b, "tls:%x\x00%x\x00%x\x00", c.TLS.CA, c.TLS.Cert, c.TLS.Key)
	}
	if c.SASL != nil {
		b = fmt.Appendf(b, "sasl:%s\x00%s\x00%s\x00", c.SASL.Mechanism, c.SASL.Username, c.SASL.Password)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
