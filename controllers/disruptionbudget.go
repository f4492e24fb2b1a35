package controllers

import (
	"context"

	"github.com/sluice-dev/sluice/internal/render"
)

// reconcileDisruptionBudget limits voluntary disruptions to one worker at a time.
func (r *StreamPipelineReconciler) reconcileDisruptionBudget(ctx context.Context, s *scope) error {
	_, err := r.apply(ctx, s.sp, render.PodDisruptionBudget(s.sp))
	return err
}
