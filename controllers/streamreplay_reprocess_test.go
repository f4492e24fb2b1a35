package controllers

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/render"
	"github.com/sluice-dev/sluice/internal/replay"
	"github.com/sluice-dev/sluice/worker"
)

// reprocessJob waits for a replay's Job and returns it with its plan.
func reprocessJob(g Gomega, sr *sluicev1.StreamReplay) (*batchv1.Job, replay.ReprocessPlan) {
	job := &batchv1.Job{}
	g.Eventually(func() error {
		return k8s.Get(context.Background(), types.NamespacedName{Namespace: sr.Namespace, Name: render.ReprocessJobName(sr.Name)}, job)
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	var plan replay.ReprocessPlan
	for _, e := range job.Spec.Template.Spec.Containers[0].Env {
		if e.Name == replay.ReprocessPlanEnv {
			g.Expect(json.Unmarshal([]byte(e.Value), &plan)).To(Succeed())
		}
	}
	return job, plan
}

// finishJob does what the kubelet and the Job controller would (envtest runs
// neither): the pod that ran, terminated with exit code and message, and the
// Job's conditions.
func finishJob(g Gomega, job *batchv1.Job, exitCode int32, message string) {
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: job.Namespace, Name: job.Name + "-x1", Labels: job.Spec.Template.Labels},
		Spec:       *job.Spec.Template.Spec.DeepCopy(),
	}
	pod.Labels[batchv1.JobNameLabel] = job.Name
	g.Expect(k8s.Create(ctx, pod)).To(Succeed())
	pod.Status.Phase = corev1.PodSucceeded
	if exitCode != 0 {
		pod.Status.Phase = corev1.PodFailed
	}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: render.ContainerName, Image: pod.Spec.Containers[0].Image,
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: exitCode, Message: message}}}}
	g.Expect(k8s.Status().Update(ctx, pod)).To(Succeed())

	now := metav1.Now()
	job.Status.StartTime = &now
	cond := func(t batchv1.JobConditionType, reason string) batchv1.JobCondition {
		return batchv1.JobCondition{Type: t, Status: corev1.ConditionTrue, Reason: reason, Message: "by the test", LastTransitionTime: now, LastProbeTime: now}
	}
	if exitCode == 0 {
		job.Status.Succeeded = 1
		job.Status.CompletionTime = &now
		job.Status.Conditions = []batchv1.JobCondition{cond(batchv1.JobSuccessCriteriaMet, "CompletionsReached"), cond(batchv1.JobComplete, "CompletionsReached")}
	} else {
		job.Status.Failed = 1
		job.Status.Conditions = []batchv1.JobCondition{cond(batchv1.JobFailureTarget, "BackoffLimitExceeded"), cond(batchv1.JobFailed, "BackoffLimitExceeded")}
	}
	g.Expect(k8s.Status().Update(ctx, job)).To(Succeed())
}

// TestReprocessRunsTheSelectionInAJobOfTheWorkerImage: a Reprocess replay of
// the poison dead letters takes its snapshot, then creates a Job that is one
// worker pod of the pipeline (image, config, service account, volumes)
// without probes, with the plan in its environment. The plan, run by the
// worker with the pipeline's rendered config (as the Job's pod does), writes
// the 200 pills through the sink and commits its position; the Job's result
// completes the replay with the counts, and the replay's group is deleted.
func TestReprocessRunsTheSelectionInAJobOfTheWorkerImage(t *testing.T) {
	g := NewWithT(t)
	k, sp := replayFixture(t, 600)
	sr := newReplay(sp, "reprocess-poison", func(sr *sluicev1.StreamReplay) {
		sr.Spec.Mode = sluicev1.ReplayModeReprocess
		sr.Spec.Select.ErrorClasses = []sluicev1.ReplayErrorClass{"poison"}
	})
	g.Expect(k8s.Create(context.Background(), sr)).To(Succeed())
	job, plan := reprocessJob(g, sr)

	got := getReplay(g, sp.Namespace, sr.Name)
	g.Expect(got.Status.Phase).To(Equal(sluicev1.ReplayPhaseRunning), got.Status.Message)
	g.Eventually(func() string { return getReplay(g, sp.Namespace, sr.Name).Status.Job }).WithTimeout(timeout).WithPolling(poll).Should(Equal(job.Name))
	g.Expect(plan.Group).To(Equal(got.Status.ProgressGroup))
	g.Expect(plan.Partitions).To(HaveLen(3))
	g.Expect(plan.Select.Classes).To(Equal([]string{"poison"}))
	g.Expect(plan.Select.MaxRedrives).To(BeZero(), "a reprocess parks nothing")
	g.Expect(plan.DeadLetter).To(BeFalse(), "reading the DLQ, a record that fails again stays there")

	pod := job.Spec.Template.Spec
	d := getDeployment(g, sp)
	g.Expect(pod.Containers[0].Image).To(Equal(d.Spec.Template.Spec.Containers[0].Image))
	g.Expect(pod.Containers[0].Args).To(Equal(d.Spec.Template.Spec.Containers[0].Args))
	g.Expect(pod.Volumes).To(Equal(d.Spec.Template.Spec.Volumes))
	g.Expect(pod.ServiceAccountName).To(Equal(render.WorkerName(sp)))
	g.Expect(pod.Containers[0].ReadinessProbe).To(BeNil())
	g.Expect(pod.Containers[0].LivenessProbe).To(BeNil())
	g.Expect(pod.RestartPolicy).To(Equal(corev1.RestartPolicyNever))
	g.Expect(pod.Containers[0].TerminationMessagePolicy).To(Equal(corev1.TerminationMessageFallbackToLogsOnError))
	g.Expect(job.Spec.Template.Labels).To(HaveKeyWithValue(sluicev1.LabelPipeline, sp.Name))
	g.Expect(job.Spec.Template.Labels).NotTo(HaveKeyWithValue("app.kubernetes.io/component", "worker"), "not one of the workload's pods")
	g.Expect(job.OwnerReferences).To(ContainElement(HaveField("UID", got.UID)), "owned by its replay")

	// The pod's run: the worker, the pipeline's config, the Job's plan.
	cfg := workerConfigOf(g, sp)
	w, err := worker.New(worker.Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	g.Expect(err).NotTo(HaveOccurred())
	res, err := w.Reprocess(context.Background(), plan)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res).To(Equal(replay.ReprocessCounts{Done: 200}))
	// While the Job runs, status shows the committed counts.
	g.Eventually(func() int64 { return getReplay(g, sp.Namespace, sr.Name).Status.Done }).
		WithTimeout(timeout).WithPolling(poll).Should(Equal(int64(200)))

	out, err := json.Marshal(res)
	g.Expect(err).NotTo(HaveOccurred())
	finishJob(g, job, 0, string(out))
	g.Eventually(func(g Gomega) {
		got := getReplay(g, sp.Namespace, sr.Name)
		g.Expect(got.Status.Phase).To(Equal(sluicev1.ReplayPhaseComplete), got.Status.Message)
		g.Expect(got.Status.Done).To(Equal(int64(200)))
		g.Expect(got.Status.FailedAgain).To(HaveValue(BeZero()))
		g.Expect(replayCondition(got, sluicev1.ConditionComplete).Status).To(Equal(metav1.ConditionTrue))
		g.Expect(got.Status.Message).To(ContainSubstring("reprocessed 200 records"))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	g.Eventually(func(g Gomega) []string { return replayEventReasons(g, got) }).WithTimeout(timeout).WithPolling(poll).
		Should(ContainElements(ReasonReplayStarted, ReasonReprocessJobCreated, ReasonReplayComplete))
	g.Eventually(func(g Gomega) {
		groups, err := k.adm.ListGroups(context.Background())
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(groups.Groups()).NotTo(ContainElement(got.Status.ProgressGroup), "the replay's group is deleted once Complete is recorded")
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
}

// TestReprocessJobThatFailsFailsTheReplay: the Job gives up (its pods kept
// failing): the replay is Failed with the Job's reason and the last pod's
// message.
func TestReprocessJobThatFailsFailsTheReplay(t *testing.T) {
	g := NewWithT(t)
	_, sp := replayFixture(t, 30)
	sr := newReplay(sp, "reprocess-fails", func(sr *sluicev1.StreamReplay) { sr.Spec.Mode = sluicev1.ReplayModeReprocess })
	g.Expect(k8s.Create(context.Background(), sr)).To(Succeed())
	job, _ := reprocessJob(g, sr)
	finishJob(g, job, 1, "postgres sink: connect: connection refused")
	g.Eventually(func(g Gomega) {
		got := getReplay(g, sp.Namespace, sr.Name)
		g.Expect(got.Status.Phase).To(Equal(sluicev1.ReplayPhaseFailed), got.Status.Message)
		g.Expect(replayCondition(got, sluicev1.ConditionFailed).Reason).To(Equal(ReasonReprocessFailed))
		g.Expect(got.Status.Message).To(And(ContainSubstring("BackoffLimitExceeded"), ContainSubstring("connection refused")))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
}

// TestReprocessOfAnExactlyOncePipelineFails: the replay says why and what
// to use instead, and creates no Job.
func TestReprocessOfAnExactlyOncePipelineFails(t *testing.T) {
	g := NewWithT(t)
	k := newKafka(t, 1)
	sp := logPipeline(newNamespace(t), "ledger")
	sp.Spec.Kafka.BootstrapServers = k.cluster.ListenAddrs()
	sp.Spec.Sink = sluicev1.SinkSpec{Kafka: &sluicev1.KafkaSink{Topic: "ledger-out"}}
	sp.Spec.Delivery.Semantics = sluicev1.ExactlyOnce
	create(t, sp)
	sr := newReplay(sp, "reprocess-eo", func(sr *sluicev1.StreamReplay) { sr.Spec.Mode = sluicev1.ReplayModeReprocess })
	g.Expect(k8s.Create(context.Background(), sr)).To(Succeed())
	g.Eventually(func(g Gomega) {
		got := getReplay(g, sp.Namespace, sr.Name)
		g.Expect(got.Status.Phase).To(Equal(sluicev1.ReplayPhaseFailed), got.Status.Message)
		g.Expect(replayCondition(got, sluicev1.ConditionFailed).Reason).To(Equal(ReasonReprocessUnsupported))
		g.Expect(got.Status.Message).To(ContainSubstring("use mode Rewind"))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	job := &batchv1.Job{}
	g.Consistently(func() error {
		return k8s.Get(context.Background(), types.NamespacedName{Namespace: sr.Namespace, Name: render.ReprocessJobName(sr.Name)}, job)
	}).WithTimeout(time.Second).Should(HaveOccurred())
}

// TestRewindWaitsOnlyForTheWorkloadsRunningPods: a rewind holds until the
// pipeline's worker pods are gone; a Reprocess Job's pod (the pipeline's
// label, another component) and a worker pod that ended don't count.
func TestRewindWaitsOnlyForTheWorkloadsRunningPods(t *testing.T) {
	g := NewWithT(t)
	k := newKafka(t, 1)
	ns := newNamespace(t)
	sp := logPipeline(ns, "orders")
	ctx := context.Background()
	pod := func(name string, labels map[string]string, phase corev1.PodPhase) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: render.ContainerName, Image: testImage}}}}
		g.Expect(k8s.Create(ctx, p)).To(Succeed())
		p.Status.Phase = phase
		g.Expect(k8s.Status().Update(ctx, p)).To(Succeed())
	}
	job := render.ReprocessJob(sp, render.DeploymentParams{Image: testImage}, "fix-reprocess", []byte("{}"), metav1.OwnerReference{})
	pod("fix-reprocess-x1", job.Spec.Template.Labels, corev1.PodRunning)
	pod("orders-worker-ended", render.Labels(sp), corev1.PodSucceeded)
	r := &StreamReplayReconciler{Client: k8s}
	g.Eventually(func() (string, error) { return r.workersRunning(ctx, sp, k.adm) }).
		WithTimeout(timeout).WithPolling(poll).Should(BeEmpty(), "neither pod is one of the workload's running pods")
	pod("orders-worker-running", render.Labels(sp), corev1.PodRunning)
	g.Eventually(func() (string, error) { return r.workersRunning(ctx, sp, k.adm) }).
		WithTimeout(timeout).WithPolling(poll).Should(ContainSubstring("1 worker pods left (orders-worker-running)"))
}
