package scaling

// Reasons of a Decision, in the CamelCase of Kubernetes condition and Event
// reasons. Each names the rule that chose Desired.
const (
	// ReasonLagAboveTarget: the lag needs more replicas; scaling up, by at
	// most MaxScaleUpStep.
	ReasonLagAboveTarget = "LagAboveTarget"
	// ReasonLagBelowTarget: the lag has needed fewer replicas for the whole
	// stabilization window; scaling down.
	ReasonLagBelowTarget = "LagBelowTarget"
	// ReasonScaledToZero: minReplicas is 0 and there was no lag for the whole
	// stabilization window.
	ReasonScaledToZero = "ScaledToZero"
	// ReasonLagAppeared: the pipeline was at zero and lag appeared; scaling up
	// at once, without waiting for anything.
	ReasonLagAppeared = "LagAppeared"
	// ReasonStabilizing: the lag needs fewer replicas, but not for long enough
	// yet; holding.
	ReasonStabilizing = "Stabilizing"
	// ReasonLagUnknown: the lag could not be read; holding, since an error is
	// no reason to scale either way.
	ReasonLagUnknown = "LagUnknown"
	// ReasonAtMaximum: the lag needs more replicas than the cap allows
	// (maxReplicas, or the partition count); staying at the cap.
	ReasonAtMaximum = "AtMaximum"
	// ReasonSteady: the current replicas are what the lag needs.
	ReasonSteady = "Steady"
	// ReasonBounds: the current replicas are outside the bounds (the spec's
	// min or max changed, or the partition count is now known); moving into
	// them at once.
	ReasonBounds = "Bounds"
)
