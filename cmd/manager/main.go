// Command manager runs the Sluice operator: it reconciles StreamPipelines into
// worker Deployments.
package main

import (
	"crypto/tls"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/controllers"
)

func main() {
	var (
		metricsAddr          string
		metricsSecure        bool
		metricsCertPath      string
		metricsCertName      string
		metricsCertKey       string
		enableHTTP2          bool
		watchNamespaces      string
		probeAddr            string
		pprofAddr            string
		leaderElect          bool
		workerImage          string
		stalledRetryInterval time.Duration
		kafkaTimeout         time.Duration
		statusSyncPeriod     time.Duration
		resyncInterval       time.Duration
		topicDeletionTimeout time.Duration
		concurrency          int
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8443",
		"Address of the Prometheus metrics endpoint (HTTPS unless --metrics-secure=false, e.g. :8080 then); 0 disables it.")
	flag.BoolVar(&metricsSecure, "metrics-secure", true,
		"Serve the metrics over HTTPS, only to clients whose token the API server authenticates (TokenReview) and "+
			"allows to get /metrics (SubjectAccessReview; the metrics-reader ClusterRole). false: plain HTTP to anyone.")
	flag.StringVar(&metricsCertPath, "metrics-cert-path", "",
		"Folder of the metrics endpoint's certificate and key, reloaded when they change (e.g. a mounted cert-manager Secret); "+
			"empty: a self-signed certificate made at start.")
	flag.StringVar(&metricsCertName, "metrics-cert-name", "tls.crt", "The certificate's file in --metrics-cert-path.")
	flag.StringVar(&metricsCertKey, "metrics-cert-key", "tls.key", "The key's file in --metrics-cert-path.")
	flag.BoolVar(&enableHTTP2, "enable-http2", false,
		"Let the metrics endpoint speak HTTP/2; off by default against HTTP/2's stream cancellation and rapid reset attacks (CVE-2023-39325, CVE-2023-44487).")
	flag.StringVar(&watchNamespaces, "watch-namespaces", os.Getenv("SLUICE_WATCH_NAMESPACES"),
		"Comma-separated namespaces whose StreamPipelines and StreamReplays the operator reconciles and whose Secrets it reads; "+
			"empty: every namespace (default: $SLUICE_WATCH_NAMESPACES). With it, Roles in those namespaces are all the "+
			"namespaced access it needs (docs/security.md).")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address of /healthz and /readyz.")
	flag.StringVar(&pprofAddr, "pprof-bind-address", "",
		"Address of Go's /debug/pprof profiles (e.g. 127.0.0.1:6060), plain HTTP to anyone who can connect; empty: off.")
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

	namespaces, err := controllers.ParseWatchNamespaces(watchNamespaces)
	if err != nil {
		log.Error(err, "invalid --watch-namespaces")
		os.Exit(2)
	}
	cfg := ctrl.GetConfigOrDie()
	metrics, certs, err := metricsOptions(metricsAddr, metricsSecure, enableHTTP2, metricsCertPath, metricsCertName, metricsCertKey)
	if err != nil {
		log.Error(err, "unable to set up the metrics endpoint's certificate", "path", metricsCertPath)
		os.Exit(1)
	}

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(sluicev1.AddToScheme(scheme))

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  controllers.CacheOptions(namespaces...),
		Metrics:                metrics,
		HealthProbeBindAddress: probeAddr,
		PprofBindAddress:       pprofAddr,
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
	if certs != nil {
		if err := mgr.Add(certs); err != nil {
			log.Error(err, "unable to watch the metrics certificate")
			os.Exit(1)
		}
	}
	// Secrets, and names the cache doesn't know, are read uncached: only in
	// the watched namespaces.
	apiReader := controllers.WatchedOnly(mgr.GetAPIReader(), namespaces)

	if err := (&controllers.StreamPipelineReconciler{
		Client:                  mgr.GetClient(),
		APIReader:               apiReader,
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
		Client:      mgr.GetClient(),
		APIReader:   apiReader,
		Recorder:    mgr.GetEventRecorder("sluice-operator"),
		WorkerImage: workerImage,
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
	if len(namespaces) > 0 {
		log.Info("watching only some namespaces", "namespaces", strings.Join(namespaces, ","))
	}
	if !metricsSecure && metricsAddr != "0" {
		log.Info("metrics served over plain HTTP to anyone who can connect (--metrics-secure=false)", "address", metricsAddr)
	}
	log.Info("starting manager")
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "manager stopped with an error")
		os.Exit(1)
	}
}

// metricsOptions serve the metrics the way current kubebuilder scaffolds do:
// HTTPS, and only to a client whose bearer token the API server authenticates
// and authorizes for GET /metrics (the manager needs tokenreviews and
// subjectaccessreviews create, config/rbac/metrics_auth_role.yaml). The
// certificate is self-signed unless certPath holds one; then certs (a runnable
// for the manager) reloads it when it changes. secure=false serves plain HTTP,
// without either.
func metricsOptions(addr string, secure, http2 bool, certPath, certName, keyName string) (metricsserver.Options, *certwatcher.CertWatcher, error) {
	opts := metricsserver.Options{BindAddress: addr, SecureServing: secure}
	if !secure {
		return opts, nil, nil
	}
	opts.FilterProvider = filters.WithAuthenticationAndAuthorization
	if !http2 {
		opts.TLSOpts = append(opts.TLSOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	if certPath == "" {
		return opts, nil, nil
	}
	// certwatcher fails here when the files are missing; left to
	// metricsserver, a typo in the path would fall back to a self-signed
	// certificate without a word.
	certs, err := certwatcher.New(filepath.Join(certPath, certName), filepath.Join(certPath, keyName))
	if err != nil {
		return opts, nil, err
	}
	opts.TLSOpts = append(opts.TLSOpts, func(c *tls.Config) { c.GetCertificate = certs.GetCertificate })
	return opts, certs, nil
}
