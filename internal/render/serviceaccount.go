package render

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// ServiceAccount gives each pipeline's workers an identity of their own (for
// network policies, workload identity, audit) with no API token mounted.
func ServiceAccount(sp *sluicev1.StreamPipeline) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{
		TypeMeta:                     metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta:                   objectMeta(sp, WorkerName(sp)),
		AutomountServiceAccountToken: ptr.To(false),
	}
}
