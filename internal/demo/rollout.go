package demo

import (
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// podState is what the pod runner's plan needs to know about one pod.
type podState struct {
	Name string
	// Revision is the hash of the pod template the pod was started from.
	Revision string
	Ready    bool
	// Terminating pods have been sent SIGTERM; they count for nothing.
	Terminating bool
	Started     time.Time
}

// rolloutPlan is what to do with one Deployment's pods now.
type rolloutPlan struct {
	// Start is how many pods of the current revision to start.
	Start int
	// Stop names the pods to stop (SIGTERM, then SIGKILL after the grace period).
	Stop []string
}

// surgeAndUnavailable reads a RollingUpdate strategy the way the Deployment
// controller does: maxSurge rounds up, maxUnavailable rounds down, and both
// zero would block a rollout, so maxSurge becomes 1. Defaults are 25% each.
func surgeAndUnavailable(s appsv1.DeploymentStrategy, desired int) (surge, unavailable int) {
	quarter := intstr.FromString("25%")
	surgeV, unavailV := &quarter, &quarter
	if ru := s.RollingUpdate; ru != nil {
		if ru.MaxSurge != nil {
			surgeV = ru.MaxSurge
		}
		if ru.MaxUnavailable != nil {
			unavailV = ru.MaxUnavailable
		}
	}
	surge, _ = intstr.GetScaledValueFromIntOrPercent(surgeV, desired, true)
	unavailable, _ = intstr.GetScaledValueFromIntOrPercent(unavailV, desired, false)
	if surge == 0 && unavailable == 0 {
		surge = 1
	}
	return surge, unavailable
}

// planRollout decides, for one Deployment, which pods to start and stop so
// that it converges on desired pods of revision current, as the Deployment
// and ReplicaSet controllers would with a RollingUpdate strategy: never more
// than desired+surge pods, never fewer than desired-unavailable ready ones
// while old pods are replaced, and on a scale-down the least useful pods go
// first (not ready before ready, newest before oldest).
func planRollout(desired int, current string, surge, unavailable int, pods []podState) rolloutPlan {
	var fresh, old []podState
	for _, p := range pods {
		switch {
		case p.Terminating:
		case p.Revision == current:
			fresh = append(fresh, p)
		default:
			old = append(old, p)
		}
	}
	var plan rolloutPlan
	if extra := len(fresh) - desired; extra > 0 {
		gone := map[string]bool{}
		for _, p := range victims(fresh, extra) {
			plan.Stop = append(plan.Stop, p.Name)
			gone[p.Name] = true
		}
		fresh = slices.DeleteFunc(fresh, func(p podState) bool { return gone[p.Name] })
	}
	if len(old) == 0 {
		plan.Start = desired - len(fresh)
		return plan
	}

	// Start new pods within the surge allowance.
	room := desired + surge - len(fresh) - len(old)
	plan.Start = max(min(desired-len(fresh), room), 0)

	// Stop old pods while enough ready pods remain: unready old pods first
	// (they serve nothing), then ready ones down to the availability floor.
	ready := 0
	for _, p := range append(slices.Clone(fresh), old...) {
		if p.Ready {
			ready++
		}
	}
	floor := desired - unavailable
	for _, p := range victims(old, len(old)) {
		if p.Ready {
			if ready-1 < floor {
				continue
			}
			ready--
		}
		plan.Stop = append(plan.Stop, p.Name)
	}
	return plan
}

// victims returns the n pods a scale-down removes first: not ready before
// ready, then the most recently started (the ReplicaSet controller's ranking,
// simplified: no node spreading here).
func victims(pods []podState, n int) []podState {
	ranked := slices.Clone(pods)
	slices.SortStableFunc(ranked, func(a, b podState) int {
		if a.Ready != b.Ready {
			if !a.Ready {
				return -1
			}
			return 1
		}
		return b.Started.Compare(a.Started)
	})
	return ranked[:min(n, len(ranked))]
}

// Restart backoff of a crashed worker. The kubelet's is 10 s doubling to 5 min,
// reset after 10 min of running; the demo's is shorter so that a run of a
// minute or two shows a crashed worker coming back, with the same shape.
const (
	restartBackoffInitial = time.Second
	restartBackoffMax     = 30 * time.Second
	restartBackoffReset   = 30 * time.Second
)

// restartDelay is how long to wait before restarting a container that exited
// after running for ran, when its previous delay was prev (0: first crash).
func restartDelay(prev, ran time.Duration) time.Duration {
	if prev == 0 || ran >= restartBackoffReset {
		return restartBackoffInitial
	}
	return min(prev*2, restartBackoffMax)
}
