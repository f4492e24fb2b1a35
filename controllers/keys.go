package controllers

import (
	"sigs.k8s.io/controller-runtime/pkg/client"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

func objectKey(sp *sluicev1.StreamPipeline, name string) client.ObjectKey {
	return client.ObjectKey{Namespace: sp.Namespace, Name: name}
}
