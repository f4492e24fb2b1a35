package charts

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// outsideNamespace is a namespace config/namespaced's operator doesn't watch.
const outsideNamespace = "outside"

// TestNamespacedModeReconcilesAndReadsOnlyTheWatchedNamespaces installs
// config/namespaced (the Roles and RoleBindings it renders, nothing written
// for the test) on a real API server that authorizes with RBAC, and runs the
// real manager binary as the operator's ServiceAccount with the args the
// overlay renders (--watch-namespaces among them). A Kafka admits only the
// user whose password is in each namespace's Secret, so a pipeline that gets
// its retry and dead-letter topics was reconciled by an operator that read its
// Secret. It proves that:
//   - a pipeline in a watched namespace, with its Secret there, is reconciled:
//     topics provisioned with the Secret's credentials, workers created;
//   - the operator's identity can read a Secret in a watched namespace but not
//     one outside them, nor list Secrets across namespaces (Forbidden);
//   - a StreamReplay in a watched namespace runs;
//   - a pipeline and a StreamReplay outside them are never touched (never
//     written to: no finalizer, status or owner; no workers, no topics), and
//     the manager's log has no "forbidden": it never asks for what the Roles
//     don't grant, its cache lists and watches only the watched namespaces.
func TestNamespacedModeReconcilesAndReadsOnlyTheWatchedNamespaces(t *testing.T) {
	objs := kustomizeBuild(t, filepath.Join(root(t), "config", "namespaced"))
	watched := watchedNamespaces(t, objs)
	if slices.Contains(watched, outsideNamespace) {
		t.Fatalf("config/namespaced watches %q, the namespace this test keeps outside", outsideNamespace)
	}
	ctx := t.Context()

	// The namespaces exist before the install (its Roles live in them).
	env := startInstallIn(t, objs, append(slices.Clone(watched), outsideNamespace))
	admin := env.Client

	const user, password = "orders-app", "s3cr3t-pa55"
	kafka, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.SeedTopics(3, "orders"),
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", user, password))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kafka.Close)
	for _, ns := range []string{watched[0], outsideNamespace} {
		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "kafka-user"},
			Data:       map[string][]byte{"username": []byte(user), "password": []byte(password)},
		}
		if err := admin.Create(ctx, secret); err != nil {
			t.Fatal(err)
		}
		// The one outside first: it has had every chance to be reconciled by
		// the time the watched one is.
		if err := admin.Create(ctx, saslPipeline(ns, kafka.ListenAddrs())); err != nil {
			t.Fatal(err)
		}
	}
	// What is outside must stay as created: any write (a finalizer, status,
	// an owner reference) changes its resourceVersion.
	outsidePipeline := &sluicev1.StreamPipeline{}
	if err := admin.Get(ctx, client.ObjectKey{Namespace: outsideNamespace, Name: "orders"}, outsidePipeline); err != nil {
		t.Fatal(err)
	}
	outsideReplay := dryRun(outsideNamespace)
	if err := admin.Create(ctx, outsideReplay); err != nil {
		t.Fatal(err)
	}

	token := tokenOf(t, env, namespace, operatorSA)
	asOperator := clientWithToken(t, env, token)
	if err := asOperator.Get(ctx, client.ObjectKey{Namespace: watched[0], Name: "kafka-user"}, &corev1.Secret{}); err != nil {
		t.Errorf("the operator's identity can't get the Secret in the watched namespace %s: %v", watched[0], err)
	}
	if err := asOperator.Get(ctx, client.ObjectKey{Namespace: watched[1], Name: "kafka-user"}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
		t.Errorf("get a missing Secret in the watched namespace %s: %v, want NotFound", watched[1], err)
	}
	if err := asOperator.Get(ctx, client.ObjectKey{Namespace: outsideNamespace, Name: "kafka-user"}, &corev1.Secret{}); !apierrors.IsForbidden(err) {
		t.Errorf("the operator's identity gets the Secret in %s, outside the watched namespaces: %v, want Forbidden", outsideNamespace, err)
	}
	if err := asOperator.List(ctx, &corev1.SecretList{}); !apierrors.IsForbidden(err) {
		t.Errorf("the operator's identity lists Secrets across namespaces: %v, want Forbidden", err)
	}

	args, vars := renderedManager(t, objs)
	m := startManager(t, kubeconfigWithToken(t, env, token), outsideAPod(args, "0", "0"), vars)

	key := client.ObjectKey{Namespace: watched[0], Name: "orders"}
	eventually(t, 90*time.Second, "the pipeline in "+watched[0]+" has its topics and workers", func(ctx context.Context) (bool, string) {
		m.running(t)
		sp := &sluicev1.StreamPipeline{}
		if err := admin.Get(ctx, key, sp); err != nil {
			return false, err.Error()
		}
		topics := meta.FindStatusCondition(sp.Status.Conditions, sluicev1.ConditionTopicsReady)
		if topics == nil || topics.Status != metav1.ConditionTrue {
			return false, fmt.Sprintf("conditions %+v", sp.Status.Conditions)
		}
		d := &appsv1.Deployment{}
		if err := admin.Get(ctx, client.ObjectKey{Namespace: key.Namespace, Name: "orders-worker"}, d); err != nil {
			return false, "worker Deployment: " + err.Error()
		}
		return true, ""
	})

	// A StreamReplay in the watched namespace runs (it reads the pipeline's
	// Secret too).
	if err := admin.Create(ctx, dryRun(watched[0])); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the dry run in "+watched[0]+" completes", func(ctx context.Context) (bool, string) {
		m.running(t)
		sr := &sluicev1.StreamReplay{}
		if err := admin.Get(ctx, client.ObjectKey{Namespace: watched[0], Name: "count"}, sr); err != nil {
			return false, err.Error()
		}
		return sr.Status.Phase == sluicev1.ReplayPhaseComplete, fmt.Sprintf("phase %q: %s", sr.Status.Phase, sr.Status.Message)
	})

	// By now the operator has synced its cache, reconciled the watched
	// pipeline and replay and read lag twice over; those outside are as
	// created.
	outReplay := &sluicev1.StreamReplay{}
	if err := admin.Get(ctx, client.ObjectKey{Namespace: outsideNamespace, Name: "count"}, outReplay); err != nil {
		t.Fatal(err)
	}
	if outReplay.ResourceVersion != outsideReplay.ResourceVersion {
		t.Errorf("the StreamReplay in %s, outside the watched namespaces, was written to: owners %v, status %+v",
			outsideNamespace, outReplay.OwnerReferences, outReplay.Status)
	}
	out := &sluicev1.StreamPipeline{}
	if err := admin.Get(ctx, client.ObjectKey{Namespace: outsideNamespace, Name: "orders"}, out); err != nil {
		t.Fatal(err)
	}
	if out.ResourceVersion != outsidePipeline.ResourceVersion {
		t.Errorf("the pipeline in %s, outside the watched namespaces, was written to: finalizers %v, status %+v",
			outsideNamespace, out.Finalizers, out.Status)
	}
	for _, o := range []client.Object{&appsv1.Deployment{}, &corev1.ConfigMap{}} {
		name := "orders-worker"
		if _, ok := o.(*corev1.ConfigMap); ok {
			name = "orders-worker-config"
		}
		if err := admin.Get(ctx, client.ObjectKey{Namespace: outsideNamespace, Name: name}, o); !apierrors.IsNotFound(err) {
			t.Errorf("%T %s/%s: %v, want NotFound", o, outsideNamespace, name, err)
		}
	}
	topics := kafkaTopics(t, kafka, user, password)
	if !slices.Contains(topics, watched[0]+".orders.dlq") {
		t.Errorf("topics %q lack the watched pipeline's DLQ", topics)
	}
	for _, tp := range topics {
		if strings.HasPrefix(tp, outsideNamespace+".") {
			t.Errorf("topic %s was provisioned for the pipeline outside the watched namespaces", tp)
		}
	}
	if lines := grepLines(m.log(t), "forbidden"); len(lines) > 0 {
		t.Errorf("the manager asked for what its Roles don't grant (%d lines), e.g.:\n%s", len(lines), lines[0])
	}
}

// saslPipeline is a log-sink pipeline on brokers, which authenticates with
// the Secret kafka-user of its namespace.
func saslPipeline(ns string, brokers []string) *sluicev1.StreamPipeline {
	return &sluicev1.StreamPipeline{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders"},
		Spec: sluicev1.StreamPipelineSpec{
			Kafka: sluicev1.KafkaSpec{
				BootstrapServers: brokers,
				SASL:             &sluicev1.KafkaSASLSpec{Mechanism: sluicev1.SASLScramSHA512, SecretRef: sluicev1.SecretRef{Name: "kafka-user"}},
			},
			Source: sluicev1.SourceSpec{Topic: "orders"},
			Sink:   sluicev1.SinkSpec{Log: &sluicev1.LogSink{}},
		},
	}
}

// dryRun is a StreamReplay that counts the dead letters of ns/orders.
func dryRun(ns string) *sluicev1.StreamReplay {
	return &sluicev1.StreamReplay{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "count"},
		Spec:       sluicev1.StreamReplaySpec{Pipeline: "orders", DryRun: true},
	}
}

// kafkaTopics lists the cluster's topics.
func kafkaTopics(t *testing.T, c *kfake.Cluster, user, password string) []string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...),
		kgo.SASL(scram.Auth{User: user, Pass: password}.AsSha512Mechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	details, err := kadm.NewClient(cl).ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return details.Names()
}

func grepLines(s, substr string) []string {
	var out []string
	for l := range strings.Lines(s) {
		if strings.Contains(strings.ToLower(l), substr) {
			out = append(out, l)
		}
	}
	return out
}
