package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/kafka"
)

// groupConfigs is a kind of group whose configs live on the group (share
// groups, KIP-848 consumer groups) and that the operator keeps.
type groupConfigs struct {
	// applies says whether the pipeline's group is of this kind.
	applies bool
	// condition is set True with reason configured, naming the group as kind.
	condition, configured, kind string
	// check says whether the cluster runs such groups.
	check func(context.Context, *kgo.Client) error
	// configs are what to set; describe says them in words.
	configs  map[string]string
	describe string
	// classify turns the kind's own failures (the cluster can't run such
	// groups, it refuses the configs) into the error to show, nil for the
	// others; failed is the reason of a failure nothing else explains.
	classify func(error) error
	failed   string
}

// reconcileGroupConfigs checks that the cluster runs the pipeline's kind of
// group and sets its configs where they differ: whenever the topics are
// provisioned (a spec change, the resync interval), so a config changed by
// hand is put back. A failure stops the reconcile before the workload is
// touched.
func (r *StreamPipelineReconciler) reconcileGroupConfigs(ctx context.Context, s *scope, g groupConfigs) error {
	sp := s.sp
	if !g.applies {
		meta.RemoveStatusCondition(&sp.Status.Conditions, g.condition)
		return nil
	}
	if s.topics == nil && meta.IsStatusConditionTrue(sp.Status.Conditions, g.condition) {
		return nil // provisioning was current: so are the group's configs
	}
	ctx, cancel := context.WithTimeout(ctx, r.KafkaTimeout)
	defer cancel()
	err := g.check(ctx, s.cluster.Client())
	var changed []string
	if err == nil {
		changed, err = kafka.EnsureGroupConfigs(ctx, s.cluster.Client(), sp.ConsumerGroup(), g.configs)
	}
	if err != nil {
		err = classifyGroupConfigError(sp, g, err)
		var st *stalledError
		var re *retryError
		switch {
		case errors.As(err, &st):
			setCondition(sp, g.condition, metav1.ConditionFalse, st.reason, st.message)
		case errors.As(err, &re):
			setCondition(sp, g.condition, metav1.ConditionFalse, re.reason, re.Error())
		}
		return err
	}
	msg := fmt.Sprintf("%s %s: %s", g.kind, sp.ConsumerGroup(), g.describe)
	if len(changed) > 0 {
		msg += " (set: " + strings.Join(changed, ", ") + ")"
	}
	setCondition(sp, g.condition, metav1.ConditionTrue, g.configured, msg)
	return nil
}

// classifyGroupConfigError says what the pipeline shows for a failure to
// check or configure its group.
func classifyGroupConfigError(sp *sluicev1.StreamPipeline, g groupConfigs, err error) error {
	if shown := g.classify(err); shown != nil {
		return shown
	}
	switch kafka.Classify(err) {
	case kafka.ProblemAuth:
		return stalled(sluicev1.ReasonKafkaAuthFailed,
			"Kafka refused to describe or alter the configs of group %s (%v): grant the operator DescribeConfigs and AlterConfigs on it", sp.ConsumerGroup(), err)
	case kafka.ProblemUnreachable:
		return retry(sluicev1.ReasonKafkaUnreachable, fmt.Errorf("kafka %s unreachable: %w", strings.Join(sp.Spec.Kafka.BootstrapServers, ","), err))
	}
	return retry(g.failed, fmt.Errorf("configure %s %s: %w", g.kind, sp.ConsumerGroup(), err))
}
