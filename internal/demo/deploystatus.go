package demo

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// deploymentStatus is the status the Deployment controller would write for
// these pods: replicas (pods not terminating), updated (of the current
// revision), ready and available (ready; the demo's workers have no
// minReadySeconds), and the Available and Progressing conditions. Conditions
// keep their transition times while their status stays the same.
func deploymentStatus(d *appsv1.Deployment, revision string, pods []podState, now metav1.Time) appsv1.DeploymentStatus {
	desired := int(ptr.Deref(d.Spec.Replicas, 1))
	_, unavailable := surgeAndUnavailable(d.Spec.Strategy, desired)
	var st appsv1.DeploymentStatus
	st.ObservedGeneration = d.Generation
	for _, p := range pods {
		if p.Terminating {
			continue
		}
		st.Replicas++
		if p.Revision == revision {
			st.UpdatedReplicas++
		}
		if p.Ready {
			st.ReadyReplicas++
		}
	}
	st.AvailableReplicas = st.ReadyReplicas
	st.UnavailableReplicas = max(int32(desired)-st.AvailableReplicas, 0)

	available := condition(appsv1.DeploymentAvailable, corev1.ConditionFalse, "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
	if int(st.AvailableReplicas) >= desired-unavailable {
		available = condition(appsv1.DeploymentAvailable, corev1.ConditionTrue, "MinimumReplicasAvailable", "Deployment has minimum availability.")
	}
	progressing := condition(appsv1.DeploymentProgressing, corev1.ConditionTrue, "ReplicaSetUpdated", "the pod runner is rolling out the pods")
	if int(st.UpdatedReplicas) == desired && int(st.AvailableReplicas) == desired && int(st.Replicas) == desired {
		progressing = condition(appsv1.DeploymentProgressing, corev1.ConditionTrue, "NewReplicaSetAvailable", "the pods of the current template are available")
	}
	for _, c := range []appsv1.DeploymentCondition{available, progressing} {
		c.LastUpdateTime, c.LastTransitionTime = now, now
		for _, old := range d.Status.Conditions {
			if old.Type == c.Type && old.Status == c.Status {
				c.LastTransitionTime = old.LastTransitionTime
				if old.Reason == c.Reason {
					c.LastUpdateTime = old.LastUpdateTime
				}
			}
		}
		st.Conditions = append(st.Conditions, c)
	}
	return st
}

func condition(t appsv1.DeploymentConditionType, s corev1.ConditionStatus, reason, msg string) appsv1.DeploymentCondition {
	return appsv1.DeploymentCondition{Type: t, Status: s, Reason: reason, Message: msg}
}
