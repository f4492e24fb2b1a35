package controllers

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestEvaluateRollout(t *testing.T) {
	dep := func(gen, observed int64, replicas, updated, available int32, conds ...appsv1.DeploymentCondition) *workload {
		return &workload{kind: "Deployment", status: deploymentStatus(&appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Generation: gen},
			Status: appsv1.DeploymentStatus{
				ObservedGeneration: observed, Replicas: replicas, UpdatedReplicas: updated,
				AvailableReplicas: available, Conditions: conds,
			},
		})}
	}
	sts := func(gen, observed int64, replicas, updated, available int32) *workload {
		return &workload{kind: "StatefulSet", status: statefulSetStatus(&appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Generation: gen},
			Status: appsv1.StatefulSetStatus{
				ObservedGeneration: observed, Replicas: replicas, UpdatedReplicas: updated,
				ReadyReplicas: available, AvailableReplicas: available,
			},
		})}
	}
	deadline := appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded", Message: "timed out"}
	progressing := appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: "NewReplicaSetAvailable"}

	cases := []struct {
		name             string
		w                *workload
		desired          int32
		complete, failed bool
		message          string
	}{
		{"no workload yet", nil, 1, false, false, "not created"},
		{"generation not observed", dep(2, 1, 3, 3, 3), 3, false, false, "observe generation 2"},
		{"some replicas not updated", dep(2, 2, 3, 1, 1), 3, false, false, "1 of 3 workers updated"},
		{"old replicas still terminating", dep(2, 2, 4, 3, 3), 3, false, false, "1 old workers pending"},
		{"updated but not available", dep(2, 2, 3, 3, 2), 3, false, false, "2 of 3 updated workers available"},
		{"complete", dep(2, 2, 3, 3, 3, progressing), 3, true, false, "3 of 3 workers available"},
		{"scaled to zero", dep(5, 5, 0, 0, 0), 0, true, false, "0 of 0"},
		{"scaling down: surplus workers still stopping", dep(3, 3, 2, 2, 2), 1, true, false, "1 of 1 workers available, 1 more stopping"},
		{"progress deadline exceeded", dep(2, 2, 3, 1, 0, deadline), 3, false, true, "rollout failed: timed out"},
		// A StatefulSet rolls one slot at a time: the old pod of a slot is
		// gone before its new one starts, so replicas never exceed desired.
		{"statefulset: generation not observed", sts(4, 3, 3, 3, 3), 3, false, false, "StatefulSet controller to observe generation 4"},
		{"statefulset: rolling, two slots to go", sts(4, 4, 3, 1, 2), 3, false, false, "1 of 3 workers updated"},
		{"statefulset: last slot restarting", sts(4, 4, 3, 3, 2), 3, false, false, "2 of 3 updated workers available"},
		{"statefulset: complete", sts(4, 4, 3, 3, 3), 3, true, false, "3 of 3 workers available"},
		{"statefulset: scaling down", sts(5, 5, 3, 3, 3), 2, true, false, "2 of 2 workers available, 1 more stopping"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := evaluateRollout(tc.w, tc.desired)
			if got.complete != tc.complete || got.failed != tc.failed {
				t.Errorf("complete=%v failed=%v, want %v %v (%s)", got.complete, got.failed, tc.complete, tc.failed, got.message)
			}
			if !strings.Contains(got.message, tc.message) {
				t.Errorf("message %q does not contain %q", got.message, tc.message)
			}
		})
	}
}
