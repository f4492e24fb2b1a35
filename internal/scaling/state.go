package scaling

import (
	"slices"
	"time"
)

// maxRecommendations is a hard cap on the history kept per pipeline. The
// history holds at most one entry per distinct replica count (see record), so
// with the API's maxReplicas of at most 1000 the cap is never reached; it is
// there so that no input can grow the State without bound.
const maxRecommendations = 1024

// recommendation is the replica count the lag asked for at one time.
type recommendation struct {
	at       time.Time
	replicas int32
}

// State is what the policy remembers between decisions: the recommendations
// of the stabilization window and since when it has been watching. The
// operator keeps one per pipeline, in memory, and passes the same one to
// every Decide; the zero value is ready to use. It is not safe for concurrent
// use (controller-runtime never reconciles one object concurrently).
//
// Losing it (an operator restart) is safe: the policy does not know what the
// lag asked for before it started watching, so it counts the current replicas
// as recommended until it has watched for a full window.
type State struct {
	// recommendations, oldest first, with strictly decreasing replicas: an
	// entry that is not higher than a newer one can never again be the
	// maximum of a window (the newer one outlives it), so it is dropped. The
	// oldest entry is therefore the maximum of the window, which is all
	// Decide asks for.
	recommendations []recommendation

	// since is when the policy started watching without a gap longer than the
	// window, and last the newest observation.
	since, last time.Time
}

// observe notes an observation at now. A fresh State, or a gap between
// observations longer than the window (nothing called Decide, so nothing was
// recorded), starts the watch over.
func (s *State) observe(now time.Time, window time.Duration) {
	if s.last.IsZero() || now.Sub(s.last) > window {
		s.since = now
	}
	if now.After(s.last) {
		s.last = now
	}
}

// floor is the fewest replicas a scale-down may go to at now: the highest
// recommendation in the window, or current while the window reaches back to
// before the watch started. The window must hold a recommendation.
func (s *State) floor(now time.Time, window time.Duration, current int32) int32 {
	highest := s.recommendations[0].replicas
	if now.Sub(s.since) < window {
		highest = max(highest, current)
	}
	return highest
}

// prune forgets recommendations that are older than the window at now. One
// made exactly one window ago is gone: after waiting the full window, a
// scale-down may happen.
func (s *State) prune(now time.Time, window time.Duration) {
	cutoff := now.Add(-window)
	i := 0
	for i < len(s.recommendations) && !s.recommendations[i].at.After(cutoff) {
		i++
	}
	s.recommendations = slices.Delete(s.recommendations, 0, i)
}

// record adds a recommendation made at now. A clock that went backwards
// records at the newest time seen instead, keeping the history in time order.
func (s *State) record(now time.Time, replicas int32) {
	n := len(s.recommendations)
	if n > 0 && now.Before(s.recommendations[n-1].at) {
		now = s.recommendations[n-1].at
	}
	for n > 0 && s.recommendations[n-1].replicas <= replicas {
		n--
	}
	s.recommendations = s.recommendations[:n]
	if n == maxRecommendations {
		// Full: keep the newest (smallest) entry alive until now instead.
		// That holds more replicas for longer, never fewer for less.
		s.recommendations[n-1].at = now
		return
	}
	s.recommendations = append(s.recommendations, recommendation{at: now, replicas: replicas})
}
