package scaling

import "time"

// Input is one observation of a pipeline.
type Input struct {
	// Now is the time of the observation; the policy never reads the clock.
	Now time.Time

	// Current is the replicas the Deployment has now (its spec.replicas).
	Current int32

	// Partitions of the source topic; 0 when not known yet.
	Partitions int32

	// TotalLag is the group's lag over all partitions, in records.
	TotalLag int64

	// LagKnown is false when the lag could not be read; TotalLag is then
	// ignored.
	LagKnown bool
}

// Decision is the replica count to apply and why.
type Decision struct {
	// Desired is the replica count the Deployment should have.
	Desired int32

	// Reason is one of the Reason constants, for conditions and Events.
	Reason string

	// Message says the same for a human, with the numbers.
	Message string
}

// Decide returns the replicas a pipeline should run. The operator calls it on
// every lag sample with the State it keeps for the pipeline (nil behaves as a
// State used once: the policy then never scales down).
//
// In order:
//   - The lag unknown: keep Current, only moved into the bounds if they
//     changed. A failed read is no evidence for scaling either way, and
//     scaling to Max or to zero on an error would turn a Kafka hiccup into an
//     outage.
//   - target = ceil(TotalLag / LagThreshold), within the bounds (see
//     Policy.bounds). Every target is recorded in st.
//   - Above Current: scale up at once, by at most MaxScaleUpStep (new pods
//     join the group one rebalance at a time, and the next sample will show
//     whether more are needed), but straight to the lower bound when Current
//     is below it. From zero with lag this is LagAppeared: no
//     stabilization delays it.
//   - Below Current: scale down to the highest target recorded within the
//     last ScaleDownStabilization (the Kubernetes HPA's scale-down
//     stabilization window), in one step. A single spike in the window holds
//     the replicas; lag that alternates high and low never scales down.
//     Scaling to zero is the same rule with a target of 0: only when Min is 0
//     and the lag was 0 for the whole window. When Current is above the upper
//     bound, the bound applies at once.
//
// The policy must see a full window of lag asking for fewer replicas before
// it removes any. So while the lag is unknown, Current is recorded as the
// recommendation (an outage of the lag read is no evidence for fewer), and
// until the State has watched for a full window (a new State, an operator
// restart, a gap in samples longer than the window) Current counts as
// recommended for the part of the window it did not see.
func (p Policy) Decide(in Input, st *State) Decision {
	if st == nil {
		st = &State{}
	}
	p = p.normalized()
	b := p.bounds(in.Partitions)
	current := max(in.Current, 0)

	st.observe(in.Now, p.ScaleDownStabilization)
	st.prune(in.Now, p.ScaleDownStabilization)
	if !in.LagKnown {
		st.record(in.Now, current)
		return holdUnknown(current, b)
	}

	lag := max(in.TotalLag, 0)
	raw := ceilDiv(lag, p.LagThreshold)
	target := b.clamp(raw)
	st.record(in.Now, target)

	o := outcome{p: p, b: b, lag: lag, raw: raw, target: target, current: current}
	switch {
	case target > current:
		return o.scaleUp()
	case target < current:
		return o.scaleDown(st.floor(in.Now, p.ScaleDownStabilization, current))
	default:
		return o.steady()
	}
}

// outcome is what a decision with a known lag is made of.
type outcome struct {
	p       Policy
	b       bounds
	lag     int64
	raw     int64 // ceil(lag / threshold), before the bounds
	target  int32 // raw within the bounds
	current int32
}

func (o outcome) scaleUp() Decision {
	stepped := min(int64(o.target), int64(o.current)+int64(o.p.MaxScaleUpStep))
	desired := max(int32(stepped), o.b.lo)
	switch {
	case o.current == 0 && o.lag > 0:
		return Decision{Desired: desired, Reason: ReasonLagAppeared, Message: o.lagAppearedMessage(desired)}
	case desired == o.b.lo:
		return Decision{Desired: desired, Reason: ReasonBounds, Message: o.belowMinMessage()}
	}
	return Decision{Desired: desired, Reason: ReasonLagAboveTarget, Message: o.scaleUpMessage(desired)}
}

// scaleDown moves down to floor (the highest recommendation in the window),
// or to the upper bound when Current is above it.
func (o outcome) scaleDown(floor int32) Decision {
	desired := o.b.clamp(int64(min(o.current, floor)))
	switch {
	case desired == o.current:
		return Decision{Desired: desired, Reason: ReasonStabilizing, Message: o.stabilizingMessage(floor)}
	case o.current > o.b.hi && desired == o.b.hi:
		return Decision{Desired: desired, Reason: ReasonBounds, Message: o.aboveCapMessage()}
	case desired == 0:
		return Decision{Desired: desired, Reason: ReasonScaledToZero, Message: o.scaledToZeroMessage()}
	}
	return Decision{Desired: desired, Reason: ReasonLagBelowTarget, Message: o.scaleDownMessage(desired)}
}

func (o outcome) steady() Decision {
	if o.raw > int64(o.b.hi) {
		return Decision{Desired: o.current, Reason: ReasonAtMaximum, Message: o.atMaximumMessage()}
	}
	return Decision{Desired: o.current, Reason: ReasonSteady, Message: o.steadyMessage()}
}

// holdUnknown keeps the current replicas while the lag can't be read, moved
// into the bounds if they changed: a user lowering maxReplicas during a Kafka
// outage must still be obeyed.
func holdUnknown(current int32, b bounds) Decision {
	desired := b.clamp(int64(current))
	if desired != current {
		return Decision{Desired: desired, Reason: ReasonBounds, Message: boundsUnknownMessage(current, desired, b)}
	}
	return Decision{Desired: desired, Reason: ReasonLagUnknown, Message: lagUnknownMessage(current)}
}

// ceilDiv is ceil(a / b) for a >= 0 and b > 0, without the overflow of
// (a + b - 1) / b.
func ceilDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 {
		q++
	}
	return q
}
