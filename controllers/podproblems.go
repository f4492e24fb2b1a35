package controllers

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/render"
)

// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch

// A rollout that doesn't finish says why in Ready, so that `kubectl get sp`
// shows "pod orders-worker-x: not ready: sink does not answer: HEAD
// http://orders/events: 503 Service Unavailable" rather than "0 of 1 updated
// workers available". The Deployment's status has no reason; the pods do, and
// the worker's /readyz says in its body what it waits for.

// maxPodsExplained bounds the pods looked into per reconcile.
const maxPodsExplained = 3

// readyzTimeout bounds the operator's request to a worker's /readyz.
const readyzTimeout = time.Second

// podProblems explains the pipeline's worker pods that are not ready, most
// telling first; empty when every pod is ready or there are none.
func (r *StreamPipelineReconciler) podProblems(ctx context.Context, s *scope) string {
	pods := &corev1.PodList{}
	if err := r.List(ctx, pods, client.InNamespace(s.sp.Namespace), client.MatchingLabels(render.SelectorLabels(s.sp))); err != nil {
		return ""
	}
	var notes []string
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.DeletionTimestamp != nil || podReady(p) {
			continue
		}
		why := podProblem(p)
		if why == "" {
			why = r.readyzBody(ctx, p)
		}
		if why == "" {
			why = "not ready"
		}
		notes = append(notes, "pod "+p.Name+": "+why)
	}
	slices.Sort(notes)
	if len(notes) > maxPodsExplained {
		notes = append(notes[:maxPodsExplained], fmt.Sprintf("and %d more", len(notes)-maxPodsExplained))
	}
	return strings.Join(notes, "; ")
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podProblem reads what the pod's status says: unschedulable, a container
// waiting (image pull, crash loop, config error) with its last termination
// (exit code and message: the worker's last log lines, FallbackToLogsOnError).
func podProblem(p *corev1.Pod) string {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			return "not scheduled: " + oneLine(c.Message)
		}
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name != render.ContainerName {
			continue
		}
		w := cs.State.Waiting
		if w == nil || w.Reason == "ContainerCreating" || w.Reason == "PodInitializing" {
			return ""
		}
		msg := w.Reason
		if w.Message != "" {
			msg += ": " + oneLine(w.Message)
		}
		if t := cs.LastTerminationState.Terminated; t != nil {
			msg += fmt.Sprintf(" (last exit %d", t.ExitCode)
			if t.Message != "" {
				msg += ": " + oneLine(t.Message)
			}
			msg += ")"
		}
		return msg
	}
	return ""
}

// readyzBody asks a running worker why it is not ready: its /readyz answers
// 503 with the reason in the body. Empty when it can't be asked.
func (r *StreamPipelineReconciler) readyzBody(ctx context.Context, p *corev1.Pod) string {
	if p.Status.PodIP == "" || p.Status.Phase != corev1.PodRunning {
		return ""
	}
	port := int32(render.HealthPort)
	for _, c := range p.Spec.Containers {
		if c.Name != render.ContainerName {
			continue
		}
		for _, cp := range c.Ports {
			if cp.Name == render.HealthPortName {
				port = cp.ContainerPort
			}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, readyzTimeout)
	defer cancel()
	url := "http://" + net.JoinHostPort(p.Status.PodIP, strconv.Itoa(int(port))) + "/readyz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return ""
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode == http.StatusOK {
		return "" // ready by now
	}
	return "not ready: " + oneLine(string(body))
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// pipelineOfPod maps a worker pod to its pipeline (the pipeline label).
func pipelineOfPod(_ context.Context, o client.Object) []reconcile.Request {
	name := o.GetLabels()[sluicev1.LabelPipeline]
	if name == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}}
}

// podStatusChanged passes pod updates whose readiness or container states
// changed (a restart, a new waiting reason), not every status write.
func podStatusChanged() predicate.Funcs {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		// A static member's pod that is gone may leave a member behind in
		// the group (reconcileStaticMembers).
		DeleteFunc: func(e event.DeleteEvent) bool { return ownedByStatefulSet(e.Object) },
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, ok1 := e.ObjectOld.(*corev1.Pod)
			n, ok2 := e.ObjectNew.(*corev1.Pod)
			return ok1 && ok2 && podStatusKey(o) != podStatusKey(n)
		},
	}
}

// podStatusKey summarizes what podProblems reads from a pod's status.
func podStatusKey(p *corev1.Pod) string {
	k := strconv.FormatBool(podReady(p)) + "|" + string(p.Status.Phase)
	for _, cs := range p.Status.ContainerStatuses {
		k += "|" + strconv.Itoa(int(cs.RestartCount))
		if w := cs.State.Waiting; w != nil {
			k += "|" + w.Reason
		}
	}
	return k
}
