package worker

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// serve runs /healthz, /readyz and /metrics on one listener until ctx ends.
// /healthz: the process is alive (stays OK during the startup jitter).
// /readyz: joined the consumer group and the sink answers.
func (w *Worker) serve(ctx context.Context, ln net.Listener, gatherer prometheus.Gatherer) {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(rw http.ResponseWriter, _ *http.Request) { _, _ = rw.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(rw http.ResponseWriter, r *http.Request) {
		if err := w.ready(r.Context()); err != nil {
			http.Error(rw, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = rw.Write([]byte("ok\n"))
	})
	mux.Handle("/metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		w.log.Error("health server stopped", "err", err)
	}
}

func (w *Worker) ready(ctx context.Context) error {
	snk := w.sinkRef.Load()
	if snk == nil {
		if err := w.sinkOpenErr.Load(); err != nil {
			return errors.New("sink not open yet: " + (*err).Error())
		}
		return errors.New("sink not open yet")
	}
	if !w.joined.Load() {
		return errors.New("not joined to the consumer group yet")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := (*snk).Ping(ctx); err != nil {
		return errors.New("sink does not answer: " + err.Error())
	}
	return nil
}
