package controllers

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/render"
)

// TestApplySkipsOnlyWhatIsUnchanged: on a real API server, a second apply of
// the same object makes no API write, and each way the object can differ —
// a changed field, a field Sluice stops setting, a hand edit of a field it
// sets — does apply.
func TestApplySkipsOnlyWhatIsUnchanged(t *testing.T) {
	ctx := context.Background()
	sp := logPipeline(newNamespace(t), "skip")
	sp.Spec.Suspend = true
	create(t, sp)
	r, direct, applies := countingApplies(t)
	desired := func(labels map[string]string, data map[string]string) *corev1.ConfigMap {
		cm := &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{Namespace: sp.Namespace, Name: "skip-probe", Labels: labels}, Data: data}
		if err := controllerutil.SetControllerReference(sp, cm, k8s.Scheme()); err != nil {
			t.Fatal(err)
		}
		return cm
	}
	step := func(what string, cm *corev1.ConfigMap, wantApplies int) {
		t.Helper()
		if _, err := r.apply(ctx, sp, cm); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if *applies != wantApplies {
			t.Fatalf("%s: %d applies so far, want %d", what, *applies, wantApplies)
		}
		if cm.UID == "" || cm.ResourceVersion == "" {
			t.Fatalf("%s: the object is not the server's (%+v)", what, cm.ObjectMeta)
		}
	}
	labels := map[string]string{"a": "1", "b": "2"}
	step("create", desired(labels, map[string]string{"k": "v"}), 1)
	step("the same again: skipped", desired(labels, map[string]string{"k": "v"}), 1)
	step("a changed value", desired(labels, map[string]string{"k": "w"}), 2)
	step("unchanged again: skipped", desired(labels, map[string]string{"k": "w"}), 2)
	step("a label Sluice stops setting", desired(map[string]string{"a": "1"}, map[string]string{"k": "w"}), 3)
	got := &corev1.ConfigMap{}
	if err := direct.Get(ctx, client.ObjectKey{Namespace: sp.Namespace, Name: "skip-probe"}, got); err != nil {
		t.Fatal(err)
	}
	if _, ok := got.Labels["b"]; ok {
		t.Fatalf("label b was dropped from the apply but is still on the object: %v", got.Labels)
	}
	got.Data["k"] = "edited by hand"
	if err := direct.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	step("a hand edit of a field Sluice sets", desired(map[string]string{"a": "1"}, map[string]string{"k": "w"}), 4)
	if err := direct.Get(ctx, client.ObjectKey{Namespace: sp.Namespace, Name: "skip-probe"}, got); err != nil || got.Data["k"] != "w" {
		t.Fatalf("the hand edit was not set back: %v %v", got.Data, err)
	}
	step("and unchanged after it: skipped", desired(map[string]string{"a": "1"}, map[string]string{"k": "w"}), 4)
}

// TestApplySkipsTheRenderedObjectsWhenUnchanged: the four objects a pipeline
// owns, as render makes them, are recognised as unchanged on the second
// apply, whatever the API server defaulted in them.
func TestApplySkipsTheRenderedObjectsWhenUnchanged(t *testing.T) {
	ctx := context.Background()
	sp := logPipeline(newNamespace(t), "rendered")
	sp.Spec.Suspend = true // the suite's reconciler leaves its workload at zero; this test applies its own copies
	sp.Spec.Sink.Log = nil
	sp.Spec.Sink.HTTP = &sluicev1.HTTPSink{URL: "http://orders.shop/events"}
	create(t, sp)
	r, _, applies := countingApplies(t)
	objects := func() []client.Object {
		cm, hash, err := render.ConfigMap(sp)
		if err != nil {
			t.Fatal(err)
		}
		// Names of their own, so the suite's reconciler of the same pipeline
		// does not apply them too.
		cm.Name += "-copy"
		d := render.Deployment(sp, render.DeploymentParams{Image: "sluice:test", ConfigHash: hash, Replicas: 2})
		d.Name += "-copy"
		sa := render.ServiceAccount(sp)
		sa.Name += "-copy"
		pdb := render.PodDisruptionBudget(sp)
		pdb.Name += "-copy"
		return []client.Object{cm, d, sa, pdb}
	}
	for _, o := range objects() {
		if _, err := r.apply(ctx, sp, o); err != nil {
			t.Fatal(err)
		}
	}
	if *applies != 4 {
		t.Fatalf("%d applies to create 4 objects", *applies)
	}
	for _, o := range objects() {
		if _, err := r.apply(ctx, sp, o); err != nil {
			t.Fatal(err)
		}
		if *applies != 4 {
			t.Fatalf("%T %s unchanged was applied again", o, o.GetName())
		}
	}
}

// countingApplies is a reconciler on the real API server whose client counts
// the server-side applies it sends, and the uncounted client beside it.
func countingApplies(t *testing.T) (*StreamPipelineReconciler, client.WithWatch, *int) {
	t.Helper()
	direct, err := client.NewWithWatch(restConfig, client.Options{Scheme: k8s.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	applies := new(int)
	r := &StreamPipelineReconciler{applied: &appliedMarks{}, Client: interceptor.NewClient(direct, interceptor.Funcs{
		Apply: func(ctx context.Context, c client.WithWatch, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
			*applies++
			return c.Apply(ctx, obj, opts...)
		}})}
	return r, direct, applies
}
