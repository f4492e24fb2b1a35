package controllers

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/render"
)

// reportUnavailable plays the Deployment controller: one updated replica,
// none available.
func reportUnavailable(t *testing.T, sp *sluicev1.StreamPipeline) {
	t.Helper()
	NewWithT(t).Eventually(func(g Gomega) {
		d := getDeployment(g, sp)
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 1, UpdatedReplicas: 1}
		g.Expect(k8s.Status().Update(context.Background(), d)).To(Succeed())
	}).WithTimeout(timeout).Should(Succeed())
}

// workerPod creates a pod of sp as the ReplicaSet would, with the status st
// (there is no kubelet in envtest).
func workerPod(t *testing.T, sp *sluicev1.StreamPipeline, name string, port int32, st corev1.PodStatus) {
	t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: sp.Namespace, Labels: render.SelectorLabels(sp)},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: render.ContainerName, Image: testImage,
			Ports: []corev1.ContainerPort{{Name: render.HealthPortName, ContainerPort: port}},
		}}},
	}
	g := NewWithT(t)
	g.Expect(k8s.Create(ctx, pod)).To(Succeed())
	pod.Status = st
	g.Expect(k8s.Status().Update(ctx, pod)).To(Succeed())
}

// TestRolloutThatDoesNotFinishSaysWhyInReady: the Deployment only says
// "0 of 1 updated workers available"; Ready says what the pods say: a worker
// whose /readyz answers 503 with its reason, and a crash-looping one with its
// last exit.
func TestRolloutThatDoesNotFinishSaysWhyInReady(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	sp := logPipeline(ns, "unready")
	create(t, sp)
	reportUnavailable(t, sp)

	readyz := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			rw.WriteHeader(http.StatusNotFound)
			return
		}
		http.Error(rw, "sink does not answer: HEAD http://orders/events: 502 Bad Gateway", http.StatusServiceUnavailable)
	}))
	defer readyz.Close()
	_, portStr, _ := net.SplitHostPort(readyz.Listener.Addr().String())
	port, _ := strconv.Atoi(portStr)
	workerPod(t, sp, "unready-worker-a", int32(port), corev1.PodStatus{
		Phase: corev1.PodRunning, PodIP: "127.0.0.1",
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}},
	})
	workerPod(t, sp, "unready-worker-b", render.HealthPort, corev1.PodStatus{
		Phase:      corev1.PodRunning,
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}},
		ContainerStatuses: []corev1.ContainerStatus{{
			Name: render.ContainerName, Image: testImage, ImageID: testImage, RestartCount: 4,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 40s restarting failed container"}},
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 2, Message: "invalid config: sink.http.url: must be an http:// or https:// URL"}},
		}},
	})

	g.Eventually(func(g Gomega) {
		ready := condition(getPipeline(g, ns, "unready"), sluicev1.ConditionReady)
		g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(ready.Message).To(And(
			ContainSubstring("pod unready-worker-a: not ready: sink does not answer: HEAD http://orders/events: 502 Bad Gateway"),
			ContainSubstring("pod unready-worker-b: CrashLoopBackOff"),
			ContainSubstring("last exit 2: invalid config: sink.http.url"),
		))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
}
