package render

import (
	"crypto/sha256"
	"encoding/hex"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/replay"
)

// componentReprocess labels a Reprocess Job and its pod. They keep the
// pipeline label (the operator's cache holds what carries it) but not the
// worker component: the workload's selector, the disruption budget and the
// pod checks of the pipeline don't count them as workers.
const componentReprocess = "reprocess"

// reprocessBackoffLimit is how many failed pods a Reprocess Job replaces:
// each new pod resumes from the committed position.
const reprocessBackoffLimit = 6

// ReprocessJobName names the Job of a Reprocess replay: "<replay>-reprocess",
// shortened with a hash when that would pass 63 characters (the Job's pods
// carry it in a label).
func ReprocessJobName(replayName string) string {
	name := replayName + "-reprocess"
	if len(name) <= 63 {
		return name
	}
	sum := sha256.Sum256([]byte(replayName))
	return replayName[:63-len("-reprocess")-9] + "-" + hex.EncodeToString(sum[:4]) + "-reprocess"
}

// ReprocessJob renders the Job that runs a Reprocess replay: one pod of the
// pipeline's worker template (image, config, Secrets, service account,
// resources, scheduling) with the plan in its environment, without the probes
// (the run serves nothing) and never restarted in place; a failed pod is
// replaced (the new one resumes from the committed position), except that an
// invalid config or plan (exit code 2) fails the Job at once, and a pod
// evicted or drained doesn't count as failed. owner is the
// StreamReplay: deleting it deletes the Job.
func ReprocessJob(sp *sluicev1.StreamPipeline, p DeploymentParams, name string, plan []byte, owner metav1.OwnerReference) *batchv1.Job {
	tmpl := workerPodTemplate(sp, p, batchv1.ControllerUidLabel)
	tmpl.Labels["app.kubernetes.io/component"] = componentReprocess
	tmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
	tmpl.Spec.TopologySpreadConstraints = nil // one pod
	c := &tmpl.Spec.Containers[0]
	c.LivenessProbe, c.ReadinessProbe, c.Ports = nil, nil, nil
	c.Env = append(c.Env, corev1.EnvVar{Name: replay.ReprocessPlanEnv, Value: string(plan)})
	// The result (JSON) is the termination message the operator reads; a pod
	// that fails leaves its log's tail there instead.
	c.TerminationMessagePolicy = corev1.TerminationMessageFallbackToLogsOnError
	delete(tmpl.Annotations, "prometheus.io/scrape")

	labels := Labels(sp)
	labels["app.kubernetes.io/component"] = componentReprocess
	return &batchv1.Job{
		TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: sp.Namespace, Labels: labels,
			OwnerReferences: []metav1.OwnerReference{owner},
		},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](reprocessBackoffLimit),
			PodFailurePolicy: &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{{
				Action: batchv1.PodFailurePolicyActionFailJob,
				OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{
					ContainerName: ptr.To(ContainerName), Operator: batchv1.PodFailurePolicyOnExitCodesOpIn, Values: []int32{2},
				},
			}, {
				// An eviction or a drain is not the run's failure: it doesn't
				// count against the backoff limit.
				Action:          batchv1.PodFailurePolicyActionIgnore,
				OnPodConditions: []batchv1.PodFailurePolicyOnPodConditionsPattern{{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue}},
			}}},
			Template: tmpl,
		},
	}
}
