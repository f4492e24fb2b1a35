package worker

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.39.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluice-dev/sluice/worker/failure"
	"github.com/sluice-dev/sluice/worker/sink"
)

// OpenTelemetry tracing is off unless an OTLP endpoint is configured with the
// standard environment variables; then the other standard variables
// (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER,
// OTEL_BSP_*, OTEL_EXPORTER_OTLP_HEADERS, ...) configure it. Off means no
// tracer provider, no kotel hooks on the Kafka clients and no process spans:
// nothing runs per record.
const (
	envOTLPEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envOTLPTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	defaultServiceName    = "sluice-worker"
)

// Span attributes Sluice adds to kotel's on a record's process span.
const (
	attrOutcome     = "sluice.outcome"     // processed, duplicate, retried, dead_lettered, deferred, fenced
	attrErrorClass  = "sluice.error.class" // transient or poison
	attrAttempt     = "sluice.attempt"     // failed attempts before this one
	outcomeDeferred = "deferred"           // not handled now; read again later (backpressure, a failed park)
	outcomeFenced   = "fenced"             // another consumer had already handled it (ExactlyOnce postgres)
)

// tracing is the worker's tracer provider and kotel's tracer.
type tracing struct {
	provider *sdktrace.TracerProvider
	kotel    *kotel.Tracer
}

// tracingEnabled: an OTLP endpoint is set, and the SDK isn't disabled.
func tracingEnabled() bool {
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") || os.Getenv("OTEL_TRACES_EXPORTER") == "none" {
		return false
	}
	return os.Getenv(envOTLPEndpoint) != "" || os.Getenv(envOTLPTracesEndpoint) != ""
}

// newTracing starts the OTLP/HTTP exporter when tracing is enabled; it returns
// nil when it isn't.
func (w *Worker) newTracing(ctx context.Context) (*tracing, error) {
	if !tracingEnabled() {
		return nil, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	// Later sources win: the default service name, then OTEL_SERVICE_NAME and
	// OTEL_RESOURCE_ATTRIBUTES.
	res, err := resource.New(ctx,
		resource.WithAttributes(
			semconv.ServiceName(defaultServiceName),
			attribute.String("sluice.pipeline", w.cfg.Pipeline.Namespace+"/"+w.cfg.Pipeline.Name),
		),
		resource.WithFromEnv(),
		resource.WithTelemetrySDK(),
	)
	if err != nil {
		w.log.Warn("OpenTelemetry resource partly detected", "err", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	w.log.Info("OpenTelemetry tracing on (OTLP over HTTP)")
	return &tracing{
		provider: tp,
		kotel: kotel.NewTracer(
			kotel.TracerProvider(tp),
			kotel.TracerPropagator(sink.TracePropagator),
			kotel.ConsumerGroup(w.cfg.Source.ConsumerGroup),
			kotel.ClientID(clientID()),
		),
	}, nil
}

// shutdown flushes the spans still buffered to the exporter.
func (t *tracing) shutdown(w *Worker) {
	if t == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.provider.Shutdown(ctx); err != nil {
		w.log.Warn("could not flush the last spans", "err", err)
	}
}

// kafkaOpts install kotel's hooks on a Kafka client: a receive span per
// fetched record (a child of the trace context in its headers) and a publish
// span per produced record (whose context it injects into the headers).
func (t *tracing) kafkaOpts() []kgo.Opt {
	if t == nil {
		return nil
	}
	return []kgo.Opt{kgo.WithHooks(t.kotel)}
}

// processSpans are the process spans of a chunk's records, nil when tracing
// is off; index i belongs to the chunk's record i.
type processSpans []trace.Span

// startProcessSpans starts a process span for each message, a child of its
// record's receive span, and gives the message its context (for the sink's
// request headers and the publish span of a parked copy).
func (w *Worker) startProcessSpans(msgs []*message) processSpans {
	if w.tracing == nil {
		return nil
	}
	spans := make(processSpans, len(msgs))
	for i, m := range msgs {
		ctx, span := w.tracing.kotel.WithProcessSpan(m.rec)
		span.SetAttributes(attribute.Int(attrAttempt, m.info.attempt))
		m.sink.Trace = ctx
		spans[i] = span
	}
	return spans
}

// end ends span i with the record's outcome and, if it failed, its error.
func (s processSpans) end(i int, outcome string, err error) {
	if s == nil || s[i] == nil {
		return
	}
	span := s[i]
	s[i] = nil
	span.SetAttributes(attribute.String(attrOutcome, outcome))
	if err != nil {
		span.SetAttributes(attribute.String(attrErrorClass, string(failure.ClassOf(err))))
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// sub is s[from:to], nil when tracing is off.
func (s processSpans) sub(from, to int) processSpans {
	if s == nil {
		return nil
	}
	return s[from:to]
}

// endAll ends the spans not ended yet with one outcome.
func (s processSpans) endAll(outcome string, err error) {
	for i := range s {
		s.end(i, outcome, err)
	}
}

// routeOutcome names a park's outcome.
func routeOutcome(k routeKind) string {
	if k == routeRetry {
		return outcomeRetried
	}
	return outcomeDeadLettered
}
