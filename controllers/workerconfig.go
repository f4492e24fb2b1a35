package controllers

import (
	"context"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/render"
)

// checkWorkerConfig renders the worker config and checks it with the rules the
// worker applies before it starts, before anything else happens: a spec that
// passed admission but renders into a config the worker would refuse (a
// default topic name that collides, which admission can't see while the
// consumer group is the default "<namespace>.<name>") stalls with the
// worker's own message, instead of provisioning topics over the source topic
// or crash-looping pods.
func (r *StreamPipelineReconciler) checkWorkerConfig(_ context.Context, s *scope) error {
	cfg := render.WorkerConfig(s.sp)
	if err := cfg.Validate(); err != nil {
		return stalled(sluicev1.ReasonInvalidWorkerConfig, "the worker config rendered from this spec would not start: %v", err)
	}
	return nil
}

// reconcileWorkerConfig renders the worker configuration into its ConfigMap and
// remembers its hash for the pod template.
func (r *StreamPipelineReconciler) reconcileWorkerConfig(ctx context.Context, s *scope) error {
	cm, hash, err := render.ConfigMap(s.sp)
	if err != nil {
		return err
	}
	if _, err := r.apply(ctx, s.sp, cm); err != nil {
		return err
	}
	s.configHash = hash
	s.sp.Status.WorkerConfigHash = hash
	return nil
}
