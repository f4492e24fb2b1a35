package controllers

import (
	"context"

	"github.com/sluice-dev/sluice/internal/render"
)

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
