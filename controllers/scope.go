package controllers

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/kafka"
	"github.com/sluice-dev/sluice/internal/scaling"
)

// scope carries what the phases of one reconcile share.
type scope struct {
	sp       *sluicev1.StreamPipeline
	original *sluicev1.StreamPipeline

	// configHash is the hash of the rendered worker configuration.
	configHash string
	// previousConfigHash is the hash on the worker workload before this
	// reconcile ("" if there was none).
	previousConfigHash string
	// workload is the worker Deployment or StatefulSet as the API server
	// returned it after apply.
	workload *workload
	// replacedWorkload is the kind of the workload this reconcile deleted
	// because the membership changed ("" if none).
	replacedWorkload string
	// previousReplicas is the workload's replica count before this reconcile.
	previousReplicas *int32
	// desiredReplicas is what this reconcile asked of the workload.
	desiredReplicas int32
	// scaleDecision explains desiredReplicas when it came from the lag policy.
	scaleDecision *scaling.Decision

	// secrets read by reconcileSecrets, by name.
	secrets map[string]*corev1.Secret
	// cluster is the shared Kafka client of the pipeline's cluster.
	cluster *kafka.Cluster
	// topics is what provisioning found and did.
	topics *kafka.TopicsReport
	// heldBy names the StreamReplay whose rewind holds the workers at zero
	// ("" when none).
	heldBy string
	// removedStaticMembers are the group.instance.ids this reconcile removed
	// from the group.
	removedStaticMembers []string
	// startingOffsetsCommitted is true when this reconcile committed the
	// group's starting offsets.
	startingOffsetsCommitted bool
	// released is true when this reconcile removed the pipeline's last
	// finalizer: the pipeline is gone, there is no status to write.
	released bool
	// podProblems explains the worker pods that are not ready, when the
	// rollout is not complete.
	podProblems string
	// deletion reports what deleting the pipeline did with its topics.
	deletion *deletionReport
}

func newScope(sp *sluicev1.StreamPipeline) *scope {
	return &scope{sp: sp, original: sp.DeepCopy(), secrets: map[string]*corev1.Secret{}}
}

// stalledError is a failure that retrying won't fix until someone changes
// something (a missing Secret, a name conflict); it sets Stalled=True.
type stalledError struct {
	reason  string
	message string
}

func (e *stalledError) Error() string { return e.reason + ": " + e.message }

func stalled(reason, format string, args ...any) error {
	return &stalledError{reason: reason, message: fmt.Sprintf(format, args...)}
}

// retryError is a failure that retrying may fix (brokers down); the work queue
// retries it with backoff, and Ready carries its reason instead of a generic one.
type retryError struct {
	reason string
	err    error
}

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

func retry(reason string, err error) error { return &retryError{reason: reason, err: err} }
