// Package kafka is the Kafka plumbing shared by the operator and the worker:
// client options for a connection (brokers, TLS, SASL) built from credential
// bytes, wherever they were read from (mounted files in the worker, Secrets in
// the operator).
package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// Conn describes how to reach a cluster.
type Conn struct {
	Brokers []string
	// TLS, when non-nil, enables TLS; empty CA means the system trust store.
	TLS *TLS
	// SASL, when non-nil, enables SASL.
	SASL *SASL
}

// TLS material, PEM encoded.
type TLS struct {
	CA, Cert, Key []byte
}

// SASL credentials.
type SASL struct {
	Mechanism, Username, Password string
}

// Opts returns the kgo options for c.
func (c Conn) Opts() ([]kgo.Opt, error) {
	if len(c.Brokers) == 0 {
		return nil, errors.New("no bootstrap servers")
	}
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...)}
	if c.TLS != nil {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if len(c.TLS.CA) > 0 {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(c.TLS.CA) {
				return nil, errors.New("tls: the CA bundle holds no PEM certificate")
			}
			cfg.RootCAs = pool
		}
		if len(c.TLS.Cert) > 0 || len(c.TLS.Key) > 0 {
			cert, err := tls.X509KeyPair(c.TLS.Cert, c.TLS.Key)
			if err != nil {
				return nil, fmt.Errorf("tls: client certificate: %w", err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	if s := c.SASL; s != nil {
		switch s.Mechanism {
		case "PLAIN":
			opts = append(opts, kgo.SASL(plain.Auth{User: s.Username, Pass: s.Password}.AsMechanism()))
		case "SCRAM-SHA-256":
			opts = append(opts, kgo.SASL(scram.Auth{User: s.Username, Pass: s.Password}.AsSha256Mechanism()))
		case "SCRAM-SHA-512":
			opts = append(opts, kgo.SASL(scram.Auth{User: s.Username, Pass: s.Password}.AsSha512Mechanism()))
		default:
			return nil, fmt.Errorf("sasl: unsupported mechanism %q", s.Mechanism)
		}
	}
	return opts, nil
}
