// Package testbroker runs a kfake Kafka broker on a chosen host address, so that
// pods of a local cluster can reach it: kfake itself listens on 127.0.0.1 only,
// which a pod can't dial. On hack/cluster.sh's cluster the address is the
// bridge gateway 10.244.0.1; on kind, the kind network's gateway.
//
// The e2e suite embeds it; hack/kfake-broker is the same broker as a program.
package testbroker

import (
	"errors"
	"fmt"
	"net"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Start starts a one-broker kfake cluster that listens on and advertises
// host:port (port 0: a free port; Addr tells which). One broker, so topics
// with replication factor 1 only, as on a one-broker Kafka. opts are further
// kfake options (kfake.SeedTopics, kfake.BrokerConfigs, ...); Close the cluster
// when done.
func Start(host string, port int, opts ...kfake.Opt) (*kfake.Cluster, error) {
	if net.ParseIP(host) == nil {
		return nil, fmt.Errorf("testbroker: host %q is not an IP address (pods have no DNS)", host)
	}
	// kfake asks to listen on 127.0.0.1:<port> and advertises whatever address
	// the listener reports, so listening on host makes it advertise host too.
	listen := func(network, addr string) (net.Listener, error) {
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		return net.Listen(network, net.JoinHostPort(host, p))
	}
	all := append([]kfake.Opt{kfake.NumBrokers(1), kfake.Ports(port), kfake.ListenFn(listen)}, opts...)
	c, err := kfake.NewCluster(all...)
	if err != nil {
		return nil, fmt.Errorf("testbroker: kfake on %s: %w", net.JoinHostPort(host, fmt.Sprint(port)), err)
	}
	return c, nil
}

// Addr is the one broker's host:port, the bootstrap server to give clients.
func Addr(c *kfake.Cluster) (string, error) {
	addrs := c.ListenAddrs()
	if len(addrs) != 1 {
		return "", errors.New("testbroker: the cluster has not exactly one broker")
	}
	return addrs[0], nil
}
