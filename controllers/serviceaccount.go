package controllers

import (
	"context"

	"github.com/sluice-dev/sluice/internal/render"
)

// reconcileServiceAccount gives the workers their own identity.
func (r *StreamPipelineReconciler) reconcileServiceAccount(ctx context.Context, s *scope) error {
	_, err := r.apply(ctx, s.sp, render.ServiceAccount(s.sp))
	return err
}
