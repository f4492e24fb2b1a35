package controllers

import (
	"fmt"
	"math"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/lag"
)

// lagConditions derives LagCritical, DeadLettersPresent and ConsumerStalled
// from one view. Each message says what was measured and what to do.
func lagConditions(v *lagView, p observeParams) [3]metav1.Condition {
	cond := func(t string, st metav1.ConditionStatus, reason, msg string) metav1.Condition {
		return metav1.Condition{Type: t, Status: st, Reason: reason, Message: msg}
	}
	if v == nil || v.Err != nil {
		msg := "lag not measured yet"
		if v != nil {
			msg = "lag could not be measured: " + v.Err.Error()
		}
		return [3]metav1.Condition{
			cond(sluicev1.ConditionLagCritical, metav1.ConditionUnknown, sluicev1.ReasonNotMeasured, msg),
			cond(sluicev1.ConditionDeadLettersPresent, metav1.ConditionUnknown, sluicev1.ReasonNotMeasured, msg),
			cond(sluicev1.ConditionConsumerStalled, metav1.ConditionUnknown, sluicev1.ReasonNotMeasured, msg),
		}
	}
	return [3]metav1.Condition{lagCritical(v, p, cond), deadLetters(v, cond), consumerStalled(v, p, cond)}
}

type condFunc func(t string, st metav1.ConditionStatus, reason, msg string) metav1.Condition

// lagCritical: the lag is more than lagCriticalSeconds of ingest (the records
// that arrive in that time), or the oldest unconsumed record is older than that.
func lagCritical(v *lagView, p observeParams, cond condFunc) metav1.Condition {
	budget := p.lagCriticalSeconds
	total := v.Lag.Total
	var ofIngest float64
	if v.RatesKnown && v.Ingest > 0 {
		ofIngest = float64(total) / v.Ingest
	}
	byRecords := ofIngest > float64(budget)
	byTime := v.TimeLagSeconds != nil && *v.TimeLagSeconds > budget
	if !byRecords && !byTime {
		msg := fmt.Sprintf("lag %d records", total)
		if ofIngest > 0 {
			msg += fmt.Sprintf(" (%.0f s of ingest)", ofIngest)
		}
		return cond(sluicev1.ConditionLagCritical, metav1.ConditionFalse, sluicev1.ReasonLagWithinBudget,
			msg+fmt.Sprintf(", within the %d s budget", budget))
	}
	msg := fmt.Sprintf("lag %d records", total)
	if byRecords {
		msg += fmt.Sprintf(" is %.0f s of ingest at %.0f records/s", ofIngest, v.Ingest)
	}
	if v.TimeLagSeconds != nil {
		msg += fmt.Sprintf("; the oldest unconsumed record is %d s old", *v.TimeLagSeconds)
	}
	msg += fmt.Sprintf(", over the %d s budget (spec.scaling.lagCriticalSeconds)", budget)
	if drain, ok := lag.DrainSeconds(total, v.Ingest, v.Process); v.RatesKnown && ok {
		msg += fmt.Sprintf("; catching up at %.0f records/s, drained in about %s", v.Process-v.Ingest, time.Duration(drain)*time.Second)
	} else {
		msg += fmt.Sprintf("; NOT catching up: processing %.0f records/s, ingest %.0f records/s. Check the workers' errors and circuit state, the sink's health, and whether replicas are at spec.scaling.maxReplicas or the partition count", v.Process, v.Ingest)
	}
	return cond(sluicev1.ConditionLagCritical, metav1.ConditionTrue, sluicev1.ReasonLagAboveBudget, msg)
}

func deadLetters(v *lagView, cond condFunc) metav1.Condition {
	switch {
	case v.DeadLetters == nil:
		return cond(sluicev1.ConditionDeadLettersPresent, metav1.ConditionUnknown, sluicev1.ReasonNotMeasured, "dead-letter topic depth not measured")
	case *v.DeadLetters == 0:
		return cond(sluicev1.ConditionDeadLettersPresent, metav1.ConditionFalse, sluicev1.ReasonNoDeadLetters, "the dead-letter topic is empty")
	case v.DeadLettersGrowing:
		return cond(sluicev1.ConditionDeadLettersPresent, metav1.ConditionTrue, sluicev1.ReasonDeadLettersGrowing,
			fmt.Sprintf("%d records in the dead-letter topic and growing: records are failing now; read their sluice-error-* headers for the cause, fix it, then replay them", *v.DeadLetters))
	}
	return cond(sluicev1.ConditionDeadLettersPresent, metav1.ConditionTrue, sluicev1.ReasonDeadLetters,
		fmt.Sprintf("%d records in the dead-letter topic: read their sluice-error-* headers for the cause, then replay or discard them", *v.DeadLetters))
}

// consumerStalled reports a group that has lag and does not move: no members at
// all for a whole health window (GroupStopped), or partitions whose committed
// offset stood still through it (PartitionsStalled).
func consumerStalled(v *lagView, p observeParams, cond condFunc) metav1.Condition {
	h := v.Health
	switch {
	case p.suspended:
		return cond(sluicev1.ConditionConsumerStalled, metav1.ConditionFalse, sluicev1.ReasonSuspended, "no workers run on purpose (suspended, or held by a rewind)")
	case h.Stopped && v.StoppedSamples >= healthWindow:
		return cond(sluicev1.ConditionConsumerStalled, metav1.ConditionTrue, sluicev1.ReasonGroupStopped,
			h.Message()+fmt.Sprintf(" for %d samples: no worker is consuming; check the worker pods (kubectl get pods -l %s) and their logs", v.StoppedSamples, sluicev1.LabelPipeline))
	case len(h.Stalled) > 0:
		return cond(sluicev1.ConditionConsumerStalled, metav1.ConditionTrue, sluicev1.ReasonPartitionsStalled,
			h.Message()+": the workers owning them make no progress; check their logs, the circuit state metric and the sink")
	}
	return cond(sluicev1.ConditionConsumerStalled, metav1.ConditionFalse, sluicev1.ReasonConsuming, "the group is consuming (or has nothing to consume)")
}

// lagStatus is the status.lag of a view; nil when not measured.
func lagStatus(v *lagView) *sluicev1.LagStatus {
	if v == nil || v.Err != nil {
		return nil
	}
	st := &sluicev1.LagStatus{
		Total:             v.Lag.Total,
		MaxPartition:      v.Lag.MaxPartition,
		PartitionsWithLag: int32(v.Lag.PartitionsWithLag),
		Seconds:           v.TimeLagSeconds,
		MeasuredAt:        metav1.NewTime(v.At),
	}
	if drain, ok := lag.DrainSeconds(v.Lag.Total, v.Ingest, v.Process); v.RatesKnown && ok {
		st.EstimatedDrainSeconds = &drain
	}
	return st
}

// rateStatus is the status.rates of a view; nil when not measured.
func rateStatus(v *lagView) *sluicev1.RateStatus {
	if v == nil || v.Err != nil || !v.RatesKnown {
		return nil
	}
	return &sluicev1.RateStatus{IngestPerSecond: int64(math.Round(v.Ingest)), ProcessPerSecond: int64(math.Round(v.Process))}
}
