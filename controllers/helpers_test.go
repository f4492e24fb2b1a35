package controllers

import (
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

func requestFor(sp *sluicev1.StreamPipeline) ctrl.Request {
	return ctrl.Request{NamespacedName: client.ObjectKeyFromObject(sp)}
}
