// Package v1alpha1 contains the v1alpha1 API of the streaming.sluice.dev group:
// the StreamPipeline kind, which Sluice reconciles into a fault-tolerant Kafka
// consumer workload. It depends only on the standard library and k8s.io API
// packages, so that other projects can import it cheaply.
//
// +kubebuilder:object:generate=true
// +groupName=streaming.sluice.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "streaming.sluice.dev", Version: "v1alpha1"}

	// SchemeBuilder registers this API's types with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds this API's types to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &StreamPipeline{}, &StreamPipelineList{}, &StreamReplay{}, &StreamReplayList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
