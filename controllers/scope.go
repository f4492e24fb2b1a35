package controllers

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// scope carries what the phases of one reconcile share.
type scope struct {
	sp       *sluicev1.StreamPipeline
	original *sluicev1.StreamPipeline

	// configHash is the hash of the rendered worker configuration.
	configHash string
	// previousConfigHash is the hash on the Deployment before this reconcile ("" if
	// there was no Deployment).
	previousConfigHash string
	// deployment is the Deployment as the API server returned it after apply.
	deployment *appsv1.Deployment
	// deploymentCreated is true when this reconcile created the Deployment.
	deploymentCreated bool
	// previousReplicas is the Deployment's replica count before this reconcile.
	previousReplicas *int32
	// desiredReplicas is what this reconcile asked of the Deployment.
	desiredReplicas int32
}

func newScope(sp *sluicev1.StreamPipeline) *scope {
	return &scope{sp: sp, original: sp.DeepCopy()}
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
