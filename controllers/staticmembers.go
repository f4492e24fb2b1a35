package controllers

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/kafka"
	"github.com/sluice-dev/sluice/internal/render"
)

// reconcileStaticMembers removes from the consumer group the static members
// whose pods are gone for good. A static worker does not leave its group when
// it stops, so that a restart rejoins without a rebalance; its partitions
// wait for it until the session times out. After a scale-down (the slots at
// and above the new replica count) or a switch to Dynamic membership (every
// slot), no pod will come back for them, and waiting out the session would
// leave their partitions unconsumed for that long.
//
// Only members named like this pipeline's StatefulSet pods are touched, and
// only when no pod of that name exists: a terminating pod still finishes its
// records, and a slot a scale-up brought back is its pod's again.
func (r *StreamPipelineReconciler) reconcileStaticMembers(ctx context.Context, s *scope) error {
	sp := s.sp
	if sp.Share() {
		return nil
	}
	members := r.observer.staticMembers(pipelineKey(sp))
	if len(members) == 0 {
		return nil
	}
	keep := int32(0)
	if sp.Static() {
		keep = s.desiredReplicas
	}
	var gone []string
	for _, id := range members {
		ordinal, ok := slotOrdinal(sp, id)
		if !ok || ordinal < keep {
			continue
		}
		err := r.Get(ctx, client.ObjectKey{Namespace: sp.Namespace, Name: id}, &corev1.Pod{})
		switch {
		case apierrors.IsNotFound(err):
			gone = append(gone, id)
		case err != nil:
			return fmt.Errorf("read pod %s: %w", id, err)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	kctx, cancel := context.WithTimeout(ctx, r.KafkaTimeout)
	defer cancel()
	reason := fmt.Sprintf("sluice: pipeline %s/%s runs %d static workers", sp.Namespace, sp.Name, keep)
	removed, err := kafka.RemoveStaticMembers(kctx, s.cluster.Admin(), sp.ConsumerGroup(), reason, gone...)
	if len(removed) > 0 {
		log.FromContext(ctx).Info("removed static members whose pods are gone", "group", sp.ConsumerGroup(), "members", removed)
		s.removedStaticMembers = removed
	}
	if err != nil {
		return retry(sluicev1.ReasonStaticMembersNotRemoved, err)
	}
	return nil
}

// slotOrdinal reads the ordinal of a StatefulSet pod name of sp's workers
// (<pipeline>-worker-<n>).
func slotOrdinal(sp *sluicev1.StreamPipeline, instanceID string) (int32, bool) {
	rest, ok := strings.CutPrefix(instanceID, render.WorkerName(sp)+"-")
	if !ok || rest == "" || (len(rest) > 1 && rest[0] == '0') {
		return 0, false
	}
	n, err := strconv.ParseInt(rest, 10, 32)
	if err != nil || n < 0 {
		return 0, false
	}
	return int32(n), true
}

// ownedByStatefulSet says whether a pod belongs to a StatefulSet.
func ownedByStatefulSet(o client.Object) bool {
	owner := metav1.GetControllerOf(o)
	return owner != nil && owner.Kind == "StatefulSet"
}
