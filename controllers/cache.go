package controllers

import (
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// CacheOptions keep the operator's memory proportional to its pipelines, not to
// the cluster: the informers of the kinds it owns hold only objects labelled
// with a pipeline (a cluster's every ConfigMap, Deployment and StatefulSet would otherwise be
// cached), and cached objects drop their managed fields, which server-side apply
// makes the largest part of each object. apply() looks up a name the cache
// doesn't know with an uncached read, so a foreign object without the label is
// still never taken over.
//
// With namespaces (cmd/manager --watch-namespaces), every informer lists and
// watches only those; without, the whole cluster.
func CacheOptions(namespaces ...string) cache.Options {
	managed, err := labels.NewRequirement(sluicev1.LabelPipeline, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant label key; can't fail
	}
	sel := labels.NewSelector().Add(*managed)
	return cache.Options{
		DefaultTransform:  cache.TransformStripManagedFields(),
		DefaultNamespaces: watchedCacheNamespaces(namespaces),
		ByObject: map[client.Object]cache.ByObject{
			&appsv1.Deployment{}:            {Label: sel},
			&appsv1.StatefulSet{}:           {Label: sel},
			&corev1.ConfigMap{}:             {Label: sel},
			&corev1.ServiceAccount{}:        {Label: sel},
			&policyv1.PodDisruptionBudget{}: {Label: sel},
			// Reprocess Jobs of replays.
			&batchv1.Job{}: {Label: sel},
			// Worker pods, to say in Ready why a rollout doesn't finish.
			&corev1.Pod{}: {Label: sel},
		},
	}
}
