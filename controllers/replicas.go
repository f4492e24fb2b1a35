package controllers

import (
	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// replicasWithoutLag decides the worker count while the pipeline's lag is not
// known: stopped pipelines (suspended, or held by a rewind) run no workers; otherwise the current count is held
// within [max(minReplicas, 1), maxReplicas]. Without a lag measurement the
// operator never scales to zero (it can't know the topic is idle) and never
// scales up on a guess.
func replicasWithoutLag(sp *sluicev1.StreamPipeline, stopped bool, current *int32) int32 {
	if stopped {
		return 0
	}
	lo := max(sp.Spec.Scaling.EffectiveMinReplicas(), 1)
	hi := max(sp.Spec.Scaling.EffectiveMaxReplicas(), lo)
	if current == nil {
		return lo
	}
	return min(max(*current, lo), hi)
}
