package demo

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/sluice-dev/sluice/controllers"
)

// workerImage is what the operator puts in the worker Deployments. The pod
// runner has no images: it maps the image's /worker to the binary the demo
// builds from cmd/worker.
const workerImage = "sluice-worker:demo"

// startOperator runs the real reconciler and lag observer in a manager, in
// this process, as cmd/manager does: the same cache options, and every
// interval left at zero so that SetupWithManager applies its defaults, which
// are cmd/manager's flag defaults (stalled retry 30s, Kafka timeout 15s,
// status sync 10s, resync 5m, 32 concurrent reconciles). The probe endpoint is
// off and the metrics endpoint is at metricsAddress ("0": off), so that the
// demo binds no fixed ports unless asked to.
func startOperator(ctx context.Context, cfg *rest.Config, scheme *runtime.Scheme, metricsAddress string) (<-chan error, error) {
	// As cmd/manager (ctrl.GetConfig): no client-side rate limit; the API
	// server's priority and fairness governs.
	cfg = rest.CopyConfig(cfg)
	cfg.QPS = -1
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  controllers.CacheOptions(),
		Metrics:                metricsserver.Options{BindAddress: metricsAddress},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		return nil, fmt.Errorf("operator: %w", err)
	}
	if _, err := setupOperator(mgr); err != nil {
		return nil, fmt.Errorf("operator: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	return done, nil
}

// setupOperator registers the reconciler with every interval left at zero:
// SetupWithManager gives it its defaults, which are cmd/manager's flag
// defaults (operator_test.go checks that they stay so).
func setupOperator(mgr ctrl.Manager) (*controllers.StreamPipelineReconciler, error) {
	r := &controllers.StreamPipelineReconciler{
		Client:      mgr.GetClient(),
		APIReader:   mgr.GetAPIReader(),
		Recorder:    mgr.GetEventRecorder("sluice-operator"),
		WorkerImage: workerImage,
	}
	return r, r.SetupWithManager(mgr)
}
