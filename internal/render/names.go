package render

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// Fixed paths and ports of the worker container; the worker's config points at them.
const (
	ContainerName  = "worker"
	HealthPortName = "http"
	HealthPort     = 8080
	ConfigDir      = "/etc/sluice/config"
	SecretsDir     = "/etc/sluice/secrets"
	WorkerBinary   = "/worker"

	// WorkerUID is the non-root user of the image (distroless "nonroot").
	WorkerUID int64 = 65532
)

// WorkerName names the Deployment, ServiceAccount and PodDisruptionBudget.
func WorkerName(sp *sluicev1.StreamPipeline) string { return sp.Name + "-worker" }

// ConfigMapName names the worker configuration.
func ConfigMapName(sp *sluicev1.StreamPipeline) string { return sp.Name + "-worker-config" }

// SelectorLabels select the pipeline's worker pods. They never change for the life
// of a Deployment (its selector is immutable).
func SelectorLabels(sp *sluicev1.StreamPipeline) map[string]string {
	return map[string]string{
		sluicev1.LabelPipeline:        sp.Name,
		"app.kubernetes.io/component": "worker",
	}
}

// Labels are set on every object Sluice creates for a pipeline.
func Labels(sp *sluicev1.StreamPipeline) map[string]string {
	l := SelectorLabels(sp)
	l["app.kubernetes.io/name"] = "sluice-worker"
	l["app.kubernetes.io/instance"] = sp.Name
	l["app.kubernetes.io/managed-by"] = "sluice"
	l["app.kubernetes.io/part-of"] = "sluice"
	return l
}

// OwnerReference makes the pipeline the controller of an object, so deleting the
// pipeline garbage-collects it and changes to it wake the reconciler.
func OwnerReference(sp *sluicev1.StreamPipeline) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion:         sluicev1.GroupVersion.String(),
		Kind:               "StreamPipeline",
		Name:               sp.Name,
		UID:                sp.UID,
		Controller:         ptr.To(true),
		BlockOwnerDeletion: ptr.To(true),
	}
}

func objectMeta(sp *sluicev1.StreamPipeline, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:            name,
		Namespace:       sp.Namespace,
		Labels:          Labels(sp),
		OwnerReferences: []metav1.OwnerReference{OwnerReference(sp)},
	}
}
