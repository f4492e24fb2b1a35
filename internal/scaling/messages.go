package scaling

import "fmt"

// The messages of the decisions. They carry the numbers a user needs to see
// why the pipeline has the replicas it has, without reading the operator's
// code: the lag, what it asks for, the cap and where it comes from.

func (o outcome) lagAppearedMessage(desired int32) string {
	return fmt.Sprintf("lag of %d records appeared; scaling up from zero to %d", o.lag, desired)
}

func (o outcome) belowMinMessage() string {
	return fmt.Sprintf("running %d, below minReplicas %d; scaling up to %d", o.current, o.b.lo, o.b.lo)
}

func (o outcome) scaleUpMessage(desired int32) string {
	msg := fmt.Sprintf("lag of %d records needs %s at %d per replica", o.lag, replicas(int32(min(o.raw, maxInt32))), o.p.LagThreshold)
	if o.raw > int64(o.b.hi) {
		msg += fmt.Sprintf(", capped at %s", o.b.capText())
	}
	msg += fmt.Sprintf("; scaling up from %d to %d", o.current, desired)
	if desired < o.target {
		msg += fmt.Sprintf(" (at most %d more per step)", o.p.MaxScaleUpStep)
	}
	return msg
}

func (o outcome) stabilizingMessage(floor int32) string {
	return fmt.Sprintf("lag of %d records needs %s; keeping %d until the lag has asked for fewer for %s (%d within that window)",
		o.lag, replicas(o.target), o.current, o.p.ScaleDownStabilization, floor)
}

func (o outcome) aboveCapMessage() string {
	return fmt.Sprintf("running %d, above the cap of %s; scaling down to %d", o.current, o.b.capText(), o.b.hi)
}

func (o outcome) scaledToZeroMessage() string {
	return fmt.Sprintf("no lag for %s and minReplicas is 0; scaling down from %d to zero", o.p.ScaleDownStabilization, o.current)
}

func (o outcome) scaleDownMessage(desired int32) string {
	return fmt.Sprintf("lag of %d records has needed at most %s for %s; scaling down from %d to %d",
		o.lag, replicas(desired), o.p.ScaleDownStabilization, o.current, desired)
}

func (o outcome) atMaximumMessage() string {
	return fmt.Sprintf("lag of %d records needs %s at %d per replica, but the cap is %s; staying at %d",
		o.lag, replicas(int32(min(o.raw, maxInt32))), o.p.LagThreshold, o.b.capText(), o.current)
}

func (o outcome) steadyMessage() string {
	return fmt.Sprintf("lag of %d records at %d per replica, within [%d, %d]; staying at %d",
		o.lag, o.p.LagThreshold, o.b.lo, o.b.hi, o.current)
}

func boundsUnknownMessage(current, desired int32, b bounds) string {
	return fmt.Sprintf("lag could not be read; running %d, outside [%d, %d]; scaling to %d", current, b.lo, b.hi, desired)
}

func lagUnknownMessage(current int32) string {
	return fmt.Sprintf("lag could not be read; keeping %s", replicas(current))
}

const maxInt32 = 1<<31 - 1

// capText names the cap and where it comes from.
func (b bounds) capText() string {
	if b.byPartitions {
		return fmt.Sprintf("%d (the source topic's partition count)", b.hi)
	}
	return fmt.Sprintf("%d (maxReplicas)", b.hi)
}

func replicas(n int32) string {
	if n == 1 {
		return "1 replica"
	}
	return fmt.Sprintf("%d replicas", n)
}
