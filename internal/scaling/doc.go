// Package scaling decides how many workers a pipeline should run from its
// consumer lag. It is the policy only: the operator measures the lag (see
// internal/lag), calls Decide on every sample, and applies Decision.Desired to
// the Deployment.
//
// The policy is that of the architecture: desired = ceil(lag / lagThreshold),
// kept within [minReplicas, min(maxReplicas, partitions)]; scale up at once but
// by a bounded step; scale down only to the highest replica count the lag has
// asked for during the stabilization window, so that bursty lag does not make
// the Deployment flap; scale to zero only when minReplicas is 0 and the lag
// has been 0 for the whole window, and back to one as soon as lag appears.
//
// Decide is pure: time comes in Input.Now and the little history the policy
// needs lives in a State the caller keeps, so every rule is tested with a
// table and a fake clock.
package scaling
