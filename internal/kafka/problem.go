package kafka

import (
	"context"
	"errors"
	"io"
	"net"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Problem is the kind of a Kafka failure, as far as the operator's reaction
// goes: retry with backoff, or wait for a person.
type Problem int

// Kinds of failures.
const (
	// ProblemOther is anything not classified below; retried with backoff.
	ProblemOther Problem = iota
	// ProblemUnreachable: no broker answered (DNS, refused, timeout); retried
	// with backoff, since brokers come back.
	ProblemUnreachable
	// ProblemAuth: the credentials were refused or lack a permission; retrying
	// can't help until the Secret or the ACLs change.
	ProblemAuth
	// ProblemTopicNotFound: the source topic does not exist.
	ProblemTopicNotFound
	// ProblemReplicationFactor: the replication factor exceeds the brokers.
	ProblemReplicationFactor
	// ProblemInvalidConfig: the cluster refused the topic policy.
	ProblemInvalidConfig
)

// Classify says what kind of failure err is.
func Classify(err error) Problem {
	var netErr net.Error
	switch {
	case errors.Is(err, ErrTopicNotFound):
		return ProblemTopicNotFound
	case errors.Is(err, kerr.InvalidReplicationFactor):
		return ProblemReplicationFactor
	case errors.Is(err, kerr.SaslAuthenticationFailed),
		errors.Is(err, kerr.TopicAuthorizationFailed),
		errors.Is(err, kerr.GroupAuthorizationFailed),
		errors.Is(err, kerr.ClusterAuthorizationFailed),
		errors.Is(err, kerr.IllegalSaslState),
		errors.Is(err, kerr.UnsupportedSaslMechanism):
		return ProblemAuth
	case errors.Is(err, kerr.InvalidConfig),
		errors.Is(err, kerr.PolicyViolation),
		errors.Is(err, kerr.InvalidPartitions),
		errors.Is(err, kerr.InvalidReplicaAssignment):
		return ProblemInvalidConfig
	case errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &netErr),
		errors.Is(err, io.EOF),
		errors.Is(err, kgo.ErrClientClosed),
		isFirstReadEOF(err):
		return ProblemUnreachable
	}
	return ProblemOther
}

func isFirstReadEOF(err error) bool {
	var e *kgo.ErrFirstReadEOF
	return errors.As(err, &e)
}
