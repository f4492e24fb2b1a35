package controllers

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/render"
	"github.com/sluice-dev/sluice/internal/testenv"
)

// The suite runs the reconciler in a manager against a real kube-apiserver and
// etcd. There is no kube-controller-manager: tests play the Deployment
// controller's part by writing Deployment status, and garbage collection is
// checked through owner references.
var (
	k8s        client.Client
	restConfig *rest.Config
	reconciler *StreamPipelineReconciler
	// fake is the in-process Kafka every pipeline of the suite points at.
	fake *kfake.Cluster
	adm  *kadm.Client
	// registry holds the operator's metrics.
	registry = prometheus.NewRegistry()
)

const (
	testImage = "sluice:test"
	timeout   = 20 * time.Second
	poll      = 50 * time.Millisecond
)

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	var err error
	fake, err = kfake.NewCluster(kfake.NumBrokers(3), kfake.SeedTopics(6, "orders"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: kfake:", err)
		return 1
	}
	defer fake.Close()
	admClient, err := kgo.NewClient(kgo.SeedBrokers(fake.ListenAddrs()...), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: kafka client:", err)
		return 1
	}
	defer admClient.Close()
	adm = kadm.NewClient(admClient)

	env, err := testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	defer func() { _ = env.Stop() }()

	// As in cmd/manager (ctrl.GetConfig): no client-side rate limit; the API
	// server's priority and fairness governs.
	mgrConfig := rest.CopyConfig(env.Config)
	mgrConfig.QPS = -1
	mgr, err := ctrl.NewManager(mgrConfig, ctrl.Options{
		Scheme:                 env.Scheme,
		Cache:                  CacheOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: manager:", err)
		return 1
	}
	reconciler = &StreamPipelineReconciler{
		Client:               mgr.GetClient(),
		APIReader:            mgr.GetAPIReader(),
		Recorder:             mgr.GetEventRecorder("sluice-operator"),
		WorkerImage:          testImage,
		StalledRetryInterval: 500 * time.Millisecond,
		KafkaTimeout:         3 * time.Second,
		ResyncInterval:       2 * time.Second,
		RetryBackoffMax:      2 * time.Second,
		TopicDeletionTimeout: 8 * time.Second, // longer than KafkaTimeout: the first failed try is retried
		StatusSyncPeriod:     200 * time.Millisecond,
		KafkaOpts:            []kgo.Opt{kgo.MetadataMinAge(100 * time.Millisecond)},
		Registry:             registry,
	}
	if err := reconciler.SetupWithManager(mgr); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: setup:", err)
		return 1
	}
	if err := (&StreamReplayReconciler{
		Client:              mgr.GetClient(),
		APIReader:           mgr.GetAPIReader(),
		Recorder:            mgr.GetEventRecorder("sluice-operator"),
		KafkaOpts:           []kgo.Opt{kgo.MetadataMinAge(100 * time.Millisecond)},
		FailedAgainInterval: 500 * time.Millisecond,
		WorkerImage:         testImage,
	}).SetupWithManager(mgr); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: setup replays:", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()

	k8s = env.Client
	restConfig = env.Config
	return m.Run()
}

// newNamespace gives a test a namespace of its own.
func newNamespace(t testing.TB) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "sp-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// logPipeline is a minimal valid pipeline with the log sink.
func logPipeline(ns, name string) *sluicev1.StreamPipeline {
	return &sluicev1.StreamPipeline{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: sluicev1.StreamPipelineSpec{
			Kafka:  sluicev1.KafkaSpec{BootstrapServers: fake.ListenAddrs()},
			Source: sluicev1.SourceSpec{Topic: "orders"},
			Sink:   sluicev1.SinkSpec{Log: &sluicev1.LogSink{}},
			Startup: sluicev1.StartupSpec{
				MaxJitter: &metav1.Duration{Duration: 5 * time.Second},
			},
		},
	}
}

func create(t *testing.T, sp *sluicev1.StreamPipeline) {
	t.Helper()
	if err := k8s.Create(context.Background(), sp); err != nil {
		t.Fatalf("create pipeline: %v", err)
	}
}

func getPipeline(g Gomega, ns, name string) *sluicev1.StreamPipeline {
	sp := &sluicev1.StreamPipeline{}
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, sp)).To(Succeed())
	return sp
}

func getDeployment(g Gomega, sp *sluicev1.StreamPipeline) *appsv1.Deployment {
	d := &appsv1.Deployment{}
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: sp.Namespace, Name: render.WorkerName(sp)}, d)).To(Succeed())
	return d
}

// updatePipeline re-reads the pipeline and applies edit, retrying on conflicts.
func updatePipeline(t *testing.T, ns, name string, edit func(*sluicev1.StreamPipeline)) {
	t.Helper()
	NewWithT(t).Eventually(func() error {
		sp := &sluicev1.StreamPipeline{}
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, sp); err != nil {
			return err
		}
		edit(sp)
		return k8s.Update(context.Background(), sp)
	}).WithTimeout(timeout).Should(Succeed())
}

// rollOut plays the Deployment controller: it reports the current generation
// with every replica updated and available.
func rollOut(t *testing.T, sp *sluicev1.StreamPipeline) {
	t.Helper()
	NewWithT(t).Eventually(func(g Gomega) {
		d := getDeployment(g, sp)
		n := ptr.Deref(d.Spec.Replicas, 1)
		d.Status = appsv1.DeploymentStatus{
			ObservedGeneration: d.Generation,
			Replicas:           n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n,
		}
		g.Expect(k8s.Status().Update(context.Background(), d)).To(Succeed())
	}).WithTimeout(timeout).Should(Succeed())
}

func condition(sp *sluicev1.StreamPipeline, t string) metav1.Condition {
	for _, c := range sp.Status.Conditions {
		if c.Type == t {
			return c
		}
	}
	return metav1.Condition{}
}

// eventReasons lists the reasons of the Events about a pipeline.
func eventReasons(g Gomega, sp *sluicev1.StreamPipeline) []string {
	list := &eventsv1.EventList{}
	g.Expect(k8s.List(context.Background(), list, client.InNamespace(sp.Namespace))).To(Succeed())
	var reasons []string
	for _, e := range list.Items {
		if e.Regarding.Kind == "StreamPipeline" && e.Regarding.Name == sp.Name {
			reasons = append(reasons, e.Reason)
		}
	}
	return reasons
}

// eventNotes lists the notes of the Events about a pipeline with a reason.
func eventNotes(g Gomega, sp *sluicev1.StreamPipeline, reason string) []string {
	list := &eventsv1.EventList{}
	g.Expect(k8s.List(context.Background(), list, client.InNamespace(sp.Namespace))).To(Succeed())
	var notes []string
	for _, e := range list.Items {
		if e.Regarding.Name == sp.Name && e.Reason == reason {
			notes = append(notes, e.Note)
		}
	}
	return notes
}

// waitReady waits until the pipeline reports Ready=True.
func waitReady(t *testing.T, ns, name string) {
	t.Helper()
	NewWithT(t).Eventually(func(g Gomega) metav1.ConditionStatus {
		return condition(getPipeline(g, ns, name), sluicev1.ConditionReady).Status
	}).WithTimeout(timeout).WithPolling(poll).Should(Equal(metav1.ConditionTrue))
}
