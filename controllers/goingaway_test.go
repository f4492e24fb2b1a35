package controllers

import (
	"context"
	"errors"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestGoingAwayTellsTheFailuresThatAreNotTheReconciles: the API server's
// refusal to create in a namespace being deleted (a real one: envtest runs no
// namespace controller, so the namespace stays Terminating), and a context
// canceled because the operator stops, are not reconcile errors; other
// refusals and a canceled call of a live operator are.
func TestGoingAwayTellsTheFailuresThatAreNotTheReconciles(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	if err := k8s.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	var refused error
	for range 50 { // the namespace turns Terminating at once; the create is refused from then on
		refused = k8s.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "x"}})
		if apierrors.IsForbidden(refused) {
			break
		}
		_ = k8s.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "x"}})
	}
	if !apierrors.IsForbidden(refused) {
		t.Fatalf("create in a terminating namespace: %v, want forbidden", refused)
	}
	otherForbidden := apierrors.NewForbidden(corev1.Resource("serviceaccounts"), "w", errors.New("RBAC says no"))
	stopped, stop := context.WithCancel(ctx)
	stop()
	for _, c := range []struct {
		name string
		ctx  context.Context
		err  error
		want bool
	}{
		{"namespace being deleted", ctx, fmt.Errorf("apply ServiceAccount w: %w", refused), true},
		{"another refusal", ctx, otherForbidden, false},
		{"the operator stopping", stopped, fmt.Errorf("patch status: %w", context.Canceled), true},
		{"a canceled call while running", ctx, fmt.Errorf("patch status: %w", context.Canceled), false},
	} {
		if got := goingAway(c.ctx, c.err); got != c.want {
			t.Errorf("%s: goingAway(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}
