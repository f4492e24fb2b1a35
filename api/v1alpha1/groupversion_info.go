// Package v1alpha1 contains the v1alpha1 API of the streaming.sluice.dev group:
// the StreamPipeline kind, which Sluice reconciles into a fault-tolerant Kafka
// consumer workload.
//
// +kubebuilder:object:generate=true
// +groupName=streaming.sluice.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "streaming.sluice.dev", Version: "v1alpha1"}

	// SchemeBuilder registers this API's types with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds this API's types to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
