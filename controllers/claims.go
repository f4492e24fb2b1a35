package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// Two pipelines on one Kafka cluster must not share a consumer group or a
// provisioned topic: in one group they split the partitions and each other's
// retry topics; sharing a retry or dead-letter topic, one re-processes the
// other's failures and deletionPolicy Delete on one deletes the other's
// topics. Every pipeline claims its group and its retry and dead-letter topics
// (an index over the cache); of two pipelines with a common claim the one
// that claimed it first keeps it and the other stalls, naming the first, until one of
// them changes or goes (claimsFirst).

// indexClaims is the field index of the claims.
const indexClaims = "sluice.claims"

// claim is one thing a pipeline uses exclusively on its Kafka cluster.
type claim struct {
	kind  claimKind
	name  string // the group or topic
	field string // the spec field that names it
}

type claimKind string

const (
	claimGroup claimKind = "group"
	claimTopic claimKind = "topic"
)

// claimsOf lists what sp uses exclusively, in a stable order.
func claimsOf(sp *sluicev1.StreamPipeline) []claim {
	out := []claim{{claimGroup, sp.ConsumerGroup(), "spec.source.consumerGroup"}}
	for _, t := range sp.RetryTopics() {
		out = append(out, claim{claimTopic, t, "spec.delivery.retry.topicPrefix"})
	}
	return append(out, claim{claimTopic, sp.DeadLetterTopic(), "spec.delivery.deadLetterTopic"})
}

// clusterKey identifies a pipeline's Kafka cluster by its bootstrap servers
// (order and case don't matter).
func clusterKey(sp *sluicev1.StreamPipeline) string {
	servers := make([]string, len(sp.Spec.Kafka.BootstrapServers))
	for i, s := range sp.Spec.Kafka.BootstrapServers {
		servers[i] = strings.ToLower(s)
	}
	slices.Sort(servers)
	return strings.Join(slices.Compact(servers), ",")
}

// indexKey is the index value of one claim on sp's cluster.
func indexKey(sp *sluicev1.StreamPipeline, c claim) string {
	return clusterKey(sp) + "|" + string(c.kind) + "|" + c.name
}

// claimIndexValues is the index function.
func claimIndexValues(o client.Object) []string {
	sp, ok := o.(*sluicev1.StreamPipeline)
	if !ok {
		return nil
	}
	cs := claimsOf(sp)
	keys := make([]string, 0, len(cs))
	for _, c := range cs {
		keys = append(keys, indexKey(sp, c))
	}
	return slices.Compact(keys)
}

// claimsFirst says whether a's claim goes before b's: a pipeline that runs
// (its topics are provisioned) before one that doesn't yet, so a new pipeline
// never takes over from a running one; then the one created first (creation
// times have a resolution of a second); then by namespace and name, so that
// exactly one of two pipelines wins.
func claimsFirst(a, b *sluicev1.StreamPipeline) bool {
	if ra, rb := runs(a), runs(b); ra != rb {
		return ra
	}
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Namespace+"/"+a.Name < b.Namespace+"/"+b.Name
}

func runs(sp *sluicev1.StreamPipeline) bool {
	return meta.IsStatusConditionTrue(sp.Status.Conditions, sluicev1.ConditionTopicsReady)
}

// claimants lists the other pipelines that claim c on sp's cluster.
func (r *StreamPipelineReconciler) claimants(ctx context.Context, sp *sluicev1.StreamPipeline, c claim) ([]sluicev1.StreamPipeline, error) {
	list := &sluicev1.StreamPipelineList{}
	if err := r.List(ctx, list, client.MatchingFields{indexClaims: indexKey(sp, c)}); err != nil {
		return nil, fmt.Errorf("list pipelines claiming %s %s: %w", c.kind, c.name, err)
	}
	others := list.Items[:0]
	for _, o := range list.Items {
		if o.UID != sp.UID {
			others = append(others, o)
		}
	}
	return others, nil
}

// reconcileClaims stalls the pipeline when a pipeline created before it
// claims its group or one of its topics on the same cluster.
func (r *StreamPipelineReconciler) reconcileClaims(ctx context.Context, s *scope) error {
	sp := s.sp
	for _, c := range claimsOf(sp) {
		others, err := r.claimants(ctx, sp, c)
		if err != nil {
			return err
		}
		for i := range others {
			o := &others[i]
			if !claimsFirst(o, sp) {
				continue
			}
			what := "consumer group"
			hint := "set spec.source.consumerGroup to a group of its own"
			if c.kind == claimTopic {
				what = "topic"
				hint = "set " + c.field + " to a name of its own (the defaults derive from the consumer group: <group>.retry.<n>, <group>.dlq)"
			}
			return stalled(sluicev1.ReasonClaimConflict,
				"%s: %s %q on %s is already used by StreamPipeline %s/%s: two pipelines sharing it would process each other's records and delete each other's topics; %s",
				c.field, what, c.name, clusterKey(sp), o.Namespace, o.Name, hint)
		}
	}
	return nil
}

// sharedTopics are the topics of sp that another pipeline also claims, and
// which: deleting sp must keep them.
func (r *StreamPipelineReconciler) sharedTopics(ctx context.Context, sp *sluicev1.StreamPipeline) (map[string]string, error) {
	shared := map[string]string{}
	for _, c := range claimsOf(sp) {
		if c.kind != claimTopic {
			continue
		}
		others, err := r.claimants(ctx, sp, c)
		if err != nil {
			return nil, err
		}
		if len(others) > 0 {
			shared[c.name] = others[0].Namespace + "/" + others[0].Name
		}
	}
	return shared, nil
}
