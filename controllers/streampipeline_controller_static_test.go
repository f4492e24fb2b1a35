package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/twmb/franz-go/pkg/kgo"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/render"
)

func staticPipeline(t *testing.T, k *testKafka, name string, replicas int32) *sluicev1.StreamPipeline {
	sp := logPipeline(newNamespace(t), name)
	sp.Spec.Kafka.BootstrapServers = k.cluster.ListenAddrs()
	sp.Spec.Consumer.Membership = sluicev1.MembershipStatic
	sp.Spec.Scaling = sluicev1.ScalingSpec{
		MinReplicas:  new(replicas),
		MaxReplicas:  new(replicas),
		PollInterval: &metav1.Duration{Duration: 200 * time.Millisecond},
	}
	return sp
}

func getStatefulSet(g Gomega, sp *sluicev1.StreamPipeline) *appsv1.StatefulSet {
	ss := &appsv1.StatefulSet{}
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: sp.Namespace, Name: render.WorkerName(sp)}, ss)).To(Succeed())
	return ss
}

func workloadGone(g Gomega, sp *sluicev1.StreamPipeline, obj client.Object) {
	err := k8s.Get(context.Background(), client.ObjectKey{Namespace: sp.Namespace, Name: render.WorkerName(sp)}, obj)
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "%T %s should be gone (err %v)", obj, render.WorkerName(sp), err)
}

// rollOutStatefulSet plays the StatefulSet controller: every slot runs the
// current revision and is available.
func rollOutStatefulSet(t *testing.T, sp *sluicev1.StreamPipeline) {
	t.Helper()
	NewWithT(t).Eventually(func(g Gomega) {
		ss := getStatefulSet(g, sp)
		n := ptr.Deref(ss.Spec.Replicas, 1)
		ss.Status = appsv1.StatefulSetStatus{
			ObservedGeneration: ss.Generation,
			Replicas:           n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n, CurrentReplicas: n,
			CurrentRevision: "r1", UpdateRevision: "r1",
		}
		g.Expect(k8s.Status().Update(context.Background(), ss)).To(Succeed())
	}).WithTimeout(timeout).Should(Succeed())
}

// TestStaticMembershipRunsTheWorkersAsAStatefulSet: membership Static runs
// the workers as a StatefulSet (stable pod names are the group.instance.ids),
// configured as static members that join without a startup delay; Ready
// follows the StatefulSet's rollout. A switch to Dynamic puts a Deployment in
// its place and removes the StatefulSet, and back.
func TestStaticMembershipRunsTheWorkersAsAStatefulSet(t *testing.T) {
	g := NewWithT(t)
	k := newKafka(t, 4)
	sp := staticPipeline(t, k, "static", 3)
	create(t, sp)

	g.Eventually(func(g Gomega) {
		ss := getStatefulSet(g, sp)
		g.Expect(ptr.Deref(ss.Spec.Replicas, -1)).To(Equal(int32(3)))
		g.Expect(ss.Spec.PodManagementPolicy).To(Equal(appsv1.ParallelPodManagement))
		g.Expect(ss.Spec.UpdateStrategy.Type).To(Equal(appsv1.RollingUpdateStatefulSetStrategyType))
		g.Expect(metav1.GetControllerOf(ss).UID).To(Equal(getPipeline(g, sp.Namespace, sp.Name).UID))
		cfg := workerConfigOf(g, sp)
		g.Expect(cfg.Consumer.StaticMembership).To(BeTrue())
		g.Expect(cfg.Startup.MaxJitter.Duration).To(BeZero(), "a static member's restart must not wait: its partitions wait for it")
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	workloadGone(g, sp, &appsv1.Deployment{})

	g.Eventually(func(g Gomega) {
		c := condition(getPipeline(g, sp.Namespace, sp.Name), sluicev1.ConditionReady)
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Message).To(ContainSubstring("StatefulSet controller to observe generation"))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	rollOutStatefulSet(t, sp)
	g.Eventually(func(g Gomega) {
		p := getPipeline(g, sp.Namespace, sp.Name)
		c := condition(p, sluicev1.ConditionReady)
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue), c.Message)
		g.Expect(c.Message).To(ContainSubstring("3 of 3 workers available"))
		g.Expect(p.Status.ReadyReplicas).To(Equal(int32(3)))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	g.Eventually(func(g Gomega) []string { return eventNotes(g, sp, sluicev1.EventWorkloadCreated) }).
		WithTimeout(timeout).WithPolling(poll).Should(ContainElement(ContainSubstring("created worker StatefulSet")))

	updatePipeline(t, sp.Namespace, sp.Name, func(sp *sluicev1.StreamPipeline) {
		sp.Spec.Consumer.Membership = sluicev1.MembershipDynamic
	})
	g.Eventually(func(g Gomega) {
		g.Expect(deploymentReplicas(g, sp)).To(Equal(int32(3)), "the replica count carries over")
		workloadGone(g, sp, &appsv1.StatefulSet{})
		g.Expect(workerConfigOf(g, sp).Consumer.StaticMembership).To(BeFalse())
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	g.Eventually(func(g Gomega) []string { return eventNotes(g, sp, sluicev1.EventWorkloadCreated) }).
		WithTimeout(timeout).WithPolling(poll).Should(ContainElement(ContainSubstring("Deployment " + render.WorkerName(sp) + " with 3 replicas in place of the StatefulSet")))

	updatePipeline(t, sp.Namespace, sp.Name, func(sp *sluicev1.StreamPipeline) {
		sp.Spec.Consumer.Membership = sluicev1.MembershipStatic
	})
	g.Eventually(func(g Gomega) {
		g.Expect(ptr.Deref(getStatefulSet(g, sp).Spec.Replicas, -1)).To(Equal(int32(3)))
		workloadGone(g, sp, &appsv1.Deployment{})
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
}

// joinStatic makes static members of group with the instance IDs, waits
// until each has partitions, and closes them. A static member does not leave
// when it closes: the group keeps it for its session timeout (60 s here), as
// it keeps the member of a worker pod that stopped.
func joinStatic(t *testing.T, k *testKafka, group string, ids ...string) {
	t.Helper()
	var clients []*kgo.Client
	for _, id := range ids {
		cl, err := kgo.NewClient(kgo.SeedBrokers(k.cluster.ListenAddrs()...), kgo.ConsumerGroup(group), kgo.ConsumeTopics("orders"),
			kgo.InstanceID(id), kgo.SessionTimeout(60*time.Second), kgo.HeartbeatInterval(time.Second),
			kgo.MetadataMinAge(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, cl)
		go func() {
			for !cl.PollFetches(context.Background()).IsClientClosed() {
			}
		}()
	}
	NewWithT(t).Eventually(func(g Gomega) {
		described, err := k.adm.DescribeGroups(context.Background(), group)
		g.Expect(err).NotTo(HaveOccurred())
		dg := described[group]
		g.Expect(dg.State).To(Equal("Stable"))
		g.Expect(dg.Members).To(HaveLen(len(ids)))
		for _, m := range dg.Members {
			a, _ := m.Assigned.AsConsumer()
			g.Expect(a).NotTo(BeNil())
			g.Expect(a.Topics).NotTo(BeEmpty(), "member %s has partitions", ptr.Deref(m.InstanceID, m.MemberID))
		}
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	for _, cl := range clients {
		cl.Close()
	}
}

// staticMembersOf lists the group's static members.
func (k *testKafka) staticMembersOf(g Gomega, group string) []string {
	described, err := k.adm.DescribeGroups(context.Background(), group)
	g.Expect(err).NotTo(HaveOccurred())
	var ids []string
	for _, m := range described[group].Members {
		if m.InstanceID != nil {
			ids = append(ids, *m.InstanceID)
		}
	}
	return ids
}

// statefulSetPod creates a pod of sp's StatefulSet by its name, as the StatefulSet
// controller would (envtest runs none).
func statefulSetPod(t *testing.T, sp *sluicev1.StreamPipeline, name string) *corev1.Pod {
	t.Helper()
	var ss *appsv1.StatefulSet
	NewWithT(t).Eventually(func(g Gomega) { ss = getStatefulSet(g, sp) }).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: sp.Namespace, Labels: render.SelectorLabels(sp),
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(ss, appsv1.SchemeGroupVersion.WithKind("StatefulSet"))}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: render.ContainerName, Image: "sluice-worker"}}},
	}
	if err := k8s.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestStaticMembersOfPodsThatAreGoneAreRemovedFromTheGroup: a stopped static
// worker stays in its group until its session times out. The operator removes
// at once the members of the slots a scale-down took away (ordinal ≥
// replicas, no pod) and keeps those of slots that still count (a restarting
// pod comes back for them); after a switch to Dynamic it removes every one,
// but only once its pod is gone (a terminating pod still finishes its
// records). Members it does not name are left alone.
func TestStaticMembersOfPodsThatAreGoneAreRemovedFromTheGroup(t *testing.T) {
	g := NewWithT(t)
	k := newKafka(t, 6)
	sp := staticPipeline(t, k, "slots", 2)
	worker := render.WorkerName(sp)
	slot := func(n int) string { return fmt.Sprintf("%s-%d", worker, n) }
	group := sp.ConsumerGroup()
	joinStatic(t, k, group, slot(0), slot(1), slot(2), slot(3), "someone-else-0")

	create(t, sp)
	pod0 := statefulSetPod(t, sp, slot(0))
	g.Eventually(func(g Gomega) []string { return k.staticMembersOf(g, group) }).
		WithTimeout(timeout).WithPolling(poll).Should(ConsistOf(slot(0), slot(1), "someone-else-0"),
		"slots 2 and 3 are past the replica count and have no pod; slot 1 has no pod but is a slot the StatefulSet restarts")
	g.Eventually(func(g Gomega) string {
		return strings.Join(eventNotes(g, sp, sluicev1.EventStaticMembersRemoved), "\n")
	}).
		WithTimeout(timeout).WithPolling(poll).Should(And(ContainSubstring(slot(2)), ContainSubstring(slot(3))))

	updatePipeline(t, sp.Namespace, sp.Name, func(sp *sluicev1.StreamPipeline) {
		sp.Spec.Consumer.Membership = sluicev1.MembershipDynamic
	})
	g.Eventually(func(g Gomega) []string { return k.staticMembersOf(g, group) }).
		WithTimeout(timeout).WithPolling(poll).Should(ConsistOf(slot(0), "someone-else-0"),
		"after the switch to Dynamic no slot counts; slot 0's pod is still there")
	g.Consistently(func(g Gomega) []string { return k.staticMembersOf(g, group) }).
		WithTimeout(2 * time.Second).WithPolling(poll).Should(ContainElement(slot(0)))

	g.Expect(k8s.Delete(context.Background(), pod0, client.GracePeriodSeconds(0))).To(Succeed())
	g.Eventually(func(g Gomega) []string { return k.staticMembersOf(g, group) }).
		WithTimeout(timeout).WithPolling(poll).Should(ConsistOf("someone-else-0"), "its pod is gone")
}
