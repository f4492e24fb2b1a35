package render

import (
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// StatefulSet renders the workers of a pipeline with static membership
// (spec.consumer.membership Static). A StatefulSet names its pods
// <pipeline>-worker-0…n-1 and gives a restarted or rolled pod its old name,
// which the worker joins the group with as its group.instance.id: the broker
// hands the pod its partitions back without a rebalance. Scaling changes the
// number of slots; a rollout restarts them in place, one at a time, highest
// ordinal first.
//
// Pods start and stop in parallel (podManagementPolicy Parallel): the workers
// don't depend on each other, and ordered start would make a scale-up from 1
// to 10 wait for nine readiness probes in a row. No persistent volumes: the
// worker keeps no state on disk.
func StatefulSet(sp *sluicev1.StreamPipeline, p DeploymentParams) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: objectMeta(sp, WorkerName(sp)),
		Spec: appsv1.StatefulSetSpec{
			Replicas:            ptr.To(p.Replicas),
			Selector:            &metav1.LabelSelector{MatchLabels: SelectorLabels(sp)},
			PodManagementPolicy: appsv1.ParallelPodManagement,
			UpdateStrategy: appsv1.StatefulSetUpdateStrategy{
				Type: appsv1.RollingUpdateStatefulSetStrategyType,
				// One slot at a time: each restarted member must rejoin
				// within the session timeout; the others keep consuming.
				RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: ptr.To[int32](0)},
			},
			RevisionHistoryLimit: ptr.To[int32](3),
			Template:             workerPodTemplate(sp, p, appsv1.StatefulSetRevisionLabel),
		},
	}
}
