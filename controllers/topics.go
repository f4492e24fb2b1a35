package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/kafka"
)

// reconcileTopics connects to the pipeline's cluster (through the shared client
// pool) and provisions the retry and dead-letter topics with the topic policy:
// on a spec change, when the source topic grows, and every resync interval
// (config drift); the reconciles the lag polls trigger skip it.
// The workers need these topics before they start, so a failure here stops the
// reconcile before the Deployment is touched: a running Deployment is left as
// it is, a new one is not created.
func (r *StreamPipelineReconciler) reconcileTopics(ctx context.Context, s *scope) error {
	sp := s.sp
	cluster, err := r.kafka.Acquire(pipelineKey(sp).String(), kafkaConn(s))
	if err != nil {
		return topicsFailed(s, stalled(sluicev1.ReasonKafkaClientConfig, "spec.kafka: %v", err))
	}
	s.cluster = cluster

	key := pipelineKey(sp)
	if p, ok := r.observer.provisioningCurrent(key, sp.Generation, time.Now(), r.ResyncInterval); ok &&
		meta.IsStatusConditionTrue(sp.Status.Conditions, sluicev1.ConditionTopicsReady) {
		sp.Status.Partitions = &p.sourcePartitions
		return nil
	}

	ctx, cancel := context.WithTimeout(ctx, r.KafkaTimeout)
	defer cancel()
	rep, err := kafka.EnsureTopics(ctx, cluster.Admin(), sp.Spec.Source.Topic, provisionedTopics(sp), topicPolicy(sp))
	if err != nil {
		return topicsFailed(s, classifyTopicsError(ctx, s, err))
	}
	s.topics = &rep
	sp.Status.Partitions = &rep.SourcePartitions
	r.observer.provisioningDone(key, provisioning{generation: sp.Generation, at: time.Now(), sourcePartitions: rep.SourcePartitions})

	reason, msg := sluicev1.ReasonTopicsProvisioned, fmt.Sprintf("%d retry topics and %s exist with the topic policy", len(sp.RetryTopics()), sp.DeadLetterTopic())
	if len(rep.NotDecreased) > 0 {
		reason = sluicev1.ReasonPartitionsNotDecreased
	}
	if notes := slices.Concat(rep.NotDecreased, rep.ReplicationDiffers); len(notes) > 0 {
		msg += "; left as they are: " + strings.Join(notes, "; ") + " (Kafka can't remove partitions; replication changes need a reassignment)"
	}
	setCondition(sp, sluicev1.ConditionTopicsReady, metav1.ConditionTrue, reason, msg)
	return nil
}

// classifyTopicsError turns a Kafka failure into what the pipeline shows: a
// Stalled reason where only a person can help, a retried error where time can.
func classifyTopicsError(ctx context.Context, s *scope, err error) error {
	sp := s.sp
	switch kafka.Classify(err) {
	case kafka.ProblemTopicNotFound:
		return stalled(sluicev1.ReasonSourceTopicNotFound,
			"source topic %q does not exist on %s: create it, or fix spec.source.topic", sp.Spec.Source.Topic, strings.Join(sp.Spec.Kafka.BootstrapServers, ","))
	case kafka.ProblemAuth:
		return stalled(sluicev1.ReasonKafkaAuthFailed,
			"Kafka refused the operator's credentials or permissions (%v): check spec.kafka.sasl/tls and the ACLs (describe, create and alter topics; describe groups)", err)
	case kafka.ProblemReplicationFactor:
		brokers := "fewer"
		if b, berr := s.cluster.Admin().ListBrokers(ctx); berr == nil {
			brokers = fmt.Sprint(len(b))
		}
		return stalled(sluicev1.ReasonInvalidReplicationFactor,
			"spec.topics.replicationFactor %d is larger than the cluster's %s brokers", topicPolicy(sp).ReplicationFactor, brokers)
	case kafka.ProblemInvalidConfig:
		return stalled(sluicev1.ReasonInvalidTopicConfig, "the cluster refused the topic policy: %v", err)
	case kafka.ProblemUnreachable:
		return retry(sluicev1.ReasonKafkaUnreachable, fmt.Errorf("kafka %s unreachable: %w", strings.Join(sp.Spec.Kafka.BootstrapServers, ","), err))
	}
	return retry(sluicev1.ReasonTopicProvisioningFailed, fmt.Errorf("provision topics: %w", err))
}

// topicsFailed records the failure on TopicsReady and passes it on.
func topicsFailed(s *scope, err error) error {
	var st *stalledError
	var re *retryError
	switch {
	case errors.As(err, &st):
		setCondition(s.sp, sluicev1.ConditionTopicsReady, metav1.ConditionFalse, st.reason, st.message)
	case errors.As(err, &re):
		setCondition(s.sp, sluicev1.ConditionTopicsReady, metav1.ConditionFalse, re.reason, re.Error())
	}
	return err
}

// reconcileFinalizer adds the topics finalizer when deletionPolicy is Delete,
// and removes it when the policy goes back to Retain.
func (r *StreamPipelineReconciler) reconcileFinalizer(ctx context.Context, sp *sluicev1.StreamPipeline) error {
	want := sp.Spec.Topics.DeletionPolicy == sluicev1.DeletionPolicyDelete
	if want == controllerutil.ContainsFinalizer(sp, sluicev1.FinalizerTopics) {
		return nil
	}
	patch := client.MergeFrom(sp.DeepCopy())
	if want {
		controllerutil.AddFinalizer(sp, sluicev1.FinalizerTopics)
	} else {
		controllerutil.RemoveFinalizer(sp, sluicev1.FinalizerTopics)
	}
	return r.Patch(ctx, sp, patch)
}

func setCondition(sp *sluicev1.StreamPipeline, t string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&sp.Status.Conditions, metav1.Condition{
		Type: t, Status: status, Reason: reason, Message: msg, ObservedGeneration: sp.Generation,
	})
}

func pipelineKey(sp *sluicev1.StreamPipeline) types.NamespacedName {
	return types.NamespacedName{Namespace: sp.Namespace, Name: sp.Name}
}
