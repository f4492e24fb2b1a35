package controllers

import (
	"context"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/twmb/franz-go/pkg/kfake"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/workerconfig"
)

func TestMissingSecretStallsWithItsNameUntilItAppears(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	sp := logPipeline(ns, "secure")
	// A Kafka that only lets this user in: the operator must read the
	// credentials from the Secret to provision topics and read lag.
	secured, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.SeedTopics(3, "orders"),
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "orders-app", "s3cr3t-pa55"))
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(secured.Close)
	sp.Spec.Kafka.BootstrapServers = secured.ListenAddrs()
	sp.Spec.Kafka.SASL = &sluicev1.KafkaSASLSpec{
		Mechanism: sluicev1.SASLScramSHA512,
		SecretRef: sluicev1.SecretRef{Name: "kafka-user"},
	}
	create(t, sp)

	g.Eventually(func(g Gomega) {
		p := getPipeline(g, ns, "secure")
		st := condition(p, sluicev1.ConditionStalled)
		g.Expect(st.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(st.Reason).To(Equal(sluicev1.ReasonSecretNotFound))
		g.Expect(st.Message).To(ContainSubstring(ns + "/kafka-user"))
		g.Expect(st.Message).To(ContainSubstring("spec.kafka.sasl.secretRef"))
		g.Expect(condition(p, sluicev1.ConditionReady).Status).To(Equal(metav1.ConditionFalse))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	g.Eventually(func(g Gomega) []string { return eventReasons(g, sp) }).
		WithTimeout(timeout).WithPolling(poll).Should(ContainElement(sluicev1.ReasonSecretNotFound))

	// A Secret without the password key: the pipeline names the key.
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "kafka-user", Namespace: ns},
		Data:       map[string][]byte{"username": []byte("orders-app")},
	}
	g.Expect(k8s.Create(ctx, secret)).To(Succeed())
	g.Eventually(func(g Gomega) {
		st := condition(getPipeline(g, ns, "secure"), sluicev1.ConditionStalled)
		g.Expect(st.Reason).To(Equal(sluicev1.ReasonSecretKeyNotFound))
		g.Expect(st.Message).To(ContainSubstring(`no key "password"`))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())

	// Complete the Secret: the stall clears by itself and the workload appears.
	secret.Data["password"] = []byte("s3cr3t-pa55")
	g.Expect(k8s.Update(ctx, secret)).To(Succeed())
	g.Eventually(func(g Gomega) {
		p := getPipeline(g, ns, "secure")
		g.Expect(condition(p, sluicev1.ConditionStalled).Status).To(Equal(metav1.ConditionFalse))
		d := getDeployment(g, sp)
		var mounted bool
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Secret != nil && v.Secret.SecretName == "kafka-user" {
				mounted = true
			}
		}
		g.Expect(mounted).To(BeTrue(), "the Secret is mounted into the worker pods")
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())

	// Referenced, never copied: the ConfigMap names files, not credentials.
	cm := &corev1.ConfigMap{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "secure-worker-config"}, cm)).To(Succeed())
	data := cm.Data[workerconfig.FileName]
	g.Expect(strings.Contains(data, "s3cr3t-pa55")).To(BeFalse())
	g.Expect(strings.Contains(data, "orders-app")).To(BeFalse())
	cfg, err := workerconfig.Parse([]byte(data))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cfg.Kafka.SASL.PasswordFile).To(Equal("/etc/sluice/secrets/kafka-sasl/password"))
}

func TestForeignObjectWithTheWorkerNameIsNotTakenOver(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	foreign := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "clash-worker", Namespace: ns, Labels: map[string]string{"team": "other"}}}
	g.Expect(k8s.Create(ctx, foreign)).To(Succeed())

	create(t, logPipeline(ns, "clash"))

	g.Eventually(func(g Gomega) {
		st := condition(getPipeline(g, ns, "clash"), sluicev1.ConditionStalled)
		g.Expect(st.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(st.Reason).To(Equal(sluicev1.ReasonResourceConflict))
		g.Expect(st.Message).To(ContainSubstring("ServiceAccount " + ns + "/clash-worker exists and is not managed by this StreamPipeline"))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	got := &corev1.ServiceAccount{}
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(foreign), got)).To(Succeed())
	g.Expect(got.OwnerReferences).To(BeEmpty())
	g.Expect(got.Labels).To(Equal(map[string]string{"team": "other"}))
}

func TestMissingWorkerImageStalls(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	sp := logPipeline(ns, "imageless")
	create(t, sp)
	noImage := *reconciler
	noImage.WorkerImage = ""
	noImage.Recorder = nil

	_, err := noImage.Reconcile(context.Background(), requestFor(sp))
	g.Expect(err).NotTo(HaveOccurred(), "a stalled pipeline is not a work-queue error")

	// The running operator (which has an image) may reconcile concurrently, so
	// read the outcome of this reconcile directly from the function.
	s := newScope(sp.DeepCopy())
	g.Expect(noImage.reconcileWorkload(context.Background(), s)).To(MatchError(ContainSubstring("set spec.image, or start the operator with --worker-image")))
}
