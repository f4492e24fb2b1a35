package controllers

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// TestRefreshesWaitBehindOtherWork: a pipeline woken only for new figures is
// handed out after one queued later at the default priority, and one asked for
// at both priorities is handed out at the higher.
func TestRefreshesWaitBehindOtherWork(t *testing.T) {
	q := priorityqueue.New[reconcile.Request]("wake-priority-test")
	defer q.ShutDown()
	req := func(name string) reconcile.Request {
		return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: name}}
	}
	refresh := func(name string) {
		sp := &sluicev1.StreamPipeline{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
		enqueueLowPriority().Generic(context.Background(), event.TypedGenericEvent[*sluicev1.StreamPipeline]{Object: sp}, q)
	}
	refresh("figures")
	refresh("both")
	q.Add(req("new"))
	q.Add(req("both"))

	var got []string
	var priorities []int
	for range 3 {
		item, priority, _ := q.GetWithPriority()
		got = append(got, item.Name)
		priorities = append(priorities, priority)
		q.Done(item)
	}
	if got[2] != "figures" || priorities[2] != lowPriority || priorities[0] != 0 || priorities[1] != 0 {
		t.Fatalf("handed out %v at priorities %v: want new and both at 0 first, then figures at %d", got, priorities, lowPriority)
	}
}
