package controllers

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// applyResult tells what an apply did.
type applyResult struct {
	created bool
	// previous is the object before the apply (nil when created).
	previous client.Object
}

// apply server-side-applies the desired object (rendered by internal/render) as
// the Sluice field manager, after making sure an existing object of that name
// belongs to this pipeline: Sluice never takes over someone else's object.
// On success, desired holds the object the API server returned.
func (r *StreamPipelineReconciler) apply(ctx context.Context, sp *sluicev1.StreamPipeline, desired client.Object) (applyResult, error) {
	existing, ok := desired.DeepCopyObject().(client.Object)
	if !ok {
		return applyResult{}, fmt.Errorf("%T is not a client.Object", desired)
	}
	kind := desired.GetObjectKind().GroupVersionKind().Kind
	var res applyResult
	err := r.Get(ctx, client.ObjectKeyFromObject(desired), existing)
	if apierrors.IsNotFound(err) && r.APIReader != nil {
		// The cache holds only objects with the pipeline label (CacheOptions);
		// ask the API server before deciding the name is free.
		err = r.APIReader.Get(ctx, client.ObjectKeyFromObject(desired), existing)
	}
	switch {
	case apierrors.IsNotFound(err):
		res.created = true
	case err != nil:
		return res, fmt.Errorf("get %s %s: %w", kind, desired.GetName(), err)
	default:
		if owner := metav1.GetControllerOf(existing); owner == nil || owner.UID != sp.UID {
			return res, stalled(sluicev1.ReasonResourceConflict,
				"%s %s/%s exists and is not managed by this StreamPipeline; rename the pipeline or remove the %s",
				kind, existing.GetNamespace(), existing.GetName(), kind)
		}
		res.previous = existing
	}

	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(desired)
	if err != nil {
		return res, fmt.Errorf("convert %s: %w", kind, err)
	}
	delete(u, "status") // the apply configuration describes intent only
	obj := &unstructured.Unstructured{Object: u}
	hash, err := appliedHash(u)
	if err != nil {
		return res, fmt.Errorf("hash %s: %w", kind, err)
	}
	if !res.created && r.applied.notOlder(kind, existing) {
		have, err := runtime.DefaultUnstructuredConverter.ToUnstructured(existing)
		if err != nil {
			return res, fmt.Errorf("convert the existing %s: %w", kind, err)
		}
		if upToDate(u, have, hash) {
			// Nothing to change: the object as it is is what the apply returns.
			gvk := desired.GetObjectKind().GroupVersionKind()
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(have, desired); err != nil {
				return res, fmt.Errorf("read %s: %w", kind, err)
			}
			desired.GetObjectKind().SetGroupVersionKind(gvk)
			return res, nil
		}
	}
	annotations := obj.GetAnnotations()
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[annotationApplied] = hash
	obj.SetAnnotations(annotations)
	if err := r.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return res, fmt.Errorf("apply %s %s: %w", kind, desired.GetName(), err)
	}
	gvk := desired.GetObjectKind().GroupVersionKind()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, desired); err != nil {
		return res, fmt.Errorf("read back %s: %w", kind, err)
	}
	desired.GetObjectKind().SetGroupVersionKind(gvk)
	r.applied.record(kind, desired)
	return res, nil
}
