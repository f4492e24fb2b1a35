package controllers

import (
	"slices"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// Operator metric names, one meaning each; docs/metrics.md lists them
// and config/prometheus alerts on them.
const (
	metricLag            = "sluice_pipeline_lag_records"
	metricPartitionLag   = "sluice_pipeline_partition_lag_records"
	metricPartitionLagS  = "sluice_pipeline_partition_lag_seconds"
	metricLagSeconds     = "sluice_pipeline_lag_seconds"
	metricLagBudget      = "sluice_pipeline_lag_critical_seconds"
	metricIngestRate     = "sluice_pipeline_ingest_records_per_second"
	metricProcessRate    = "sluice_pipeline_process_records_per_second"
	metricDeadLetters    = "sluice_pipeline_dead_letter_records"
	metricDesired        = "sluice_pipeline_desired_replicas"
	metricReplicas       = "sluice_pipeline_replicas"
	metricCondition      = "sluice_pipeline_condition"
	metricReconcileError = "sluice_pipeline_reconcile_errors_total"
	metricLagReadErrors  = "sluice_pipeline_lag_read_errors_total"
	metricKafkaClients   = "sluice_kafka_clients"
)

// pipelineMetrics are the operator's per-pipeline metrics, a Prometheus
// collector: each pipeline's last figures are kept in one small struct and the
// series are made at scrape time, as kube-state-metrics does. Keeping a
// GaugeVec child per series instead (about 30 per pipeline: a condition is
// three) held ~20 KB per pipeline of label pairs and maps, a third of the
// operator's live heap at 1,000 pipelines (BenchmarkFleetLive, heap profile
// 2026-12-03). Series of a deleted pipeline go with it (forget).
type pipelineMetrics struct {
	lag, lagSeconds, lagBudget, ingest, process, deadLetters, desired, replicas *prometheus.Desc
	partitionLag, partitionLagSeconds                                           *prometheus.Desc
	condition                                                                   *prometheus.Desc
	reconcileErrors, lagReadErrors                                              *prometheus.Desc
	kafkaClients                                                                prometheus.GaugeFunc

	mu        sync.Mutex
	pipelines map[types.NamespacedName]*pipelineSeries
}

// pipelineSeries are one pipeline's figures, as its series show them.
type pipelineSeries struct {
	lag, lagBudget, lagSeconds, ingest, process, deadLetters optionalValue
	partitions                                               []partitionSeries
	desired, replicas, readyReplicas                         optionalValue
	conditions                                               []conditionSeries
	reconcileErrors                                          map[string]float64
	lagReadErrors                                            optionalValue
}

// optionalValue is a series' value, or no series (ok false).
type optionalValue struct {
	v  float64
	ok bool
}

func value(v float64) optionalValue { return optionalValue{v: v, ok: true} }

type partitionSeries struct {
	partition string
	lag       float64
	seconds   optionalValue
}

type conditionSeries struct{ typ, status string }

func newPipelineMetrics(reg prometheus.Registerer, clients func() int) *pipelineMetrics {
	pl := []string{"namespace", "pipeline"}
	desc := func(name, help string, extra ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, append(pl[:2:2], extra...), nil)
	}
	m := &pipelineMetrics{
		lag:                 desc(metricLag, "Consumer group lag over all source partitions, in records."),
		partitionLag:        desc(metricPartitionLag, "Consumer group lag of one source partition, in records.", "partition"),
		partitionLagSeconds: desc(metricPartitionLagS, "Time lag of one source partition: the age of its oldest unconsumed record, 0 without lag; absent while that age is unknown.", "partition"),
		lagSeconds:          desc(metricLagSeconds, "Age of the oldest record the group has not consumed, in seconds (0 without lag)."),
		lagBudget:           desc(metricLagBudget, "spec.scaling.lagCriticalSeconds: the lag budget in seconds of ingest."),
		ingest:              desc(metricIngestRate, "Records per second arriving at the source topic."),
		process:             desc(metricProcessRate, "Records per second the group commits."),
		deadLetters:         desc(metricDeadLetters, "Records in the dead-letter topic."),
		desired:             desc(metricDesired, "Worker replicas the operator asks for."),
		replicas:            desc(metricReplicas, "Worker replicas the Deployment has, and ready.", "state"),
		condition:           desc(metricCondition, "1 for the pipeline's current status of each condition type, 0 for the other statuses.", "type", "status"),
		reconcileErrors:     desc(metricReconcileError, "Reconciles of a pipeline that failed, by reason.", "reason"),
		lagReadErrors:       desc(metricLagReadErrors, "Lag samples that failed (unreachable cluster, missing topic)."),
		kafkaClients: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: metricKafkaClients,
			Help: "Kafka clients the operator holds open: one per cluster and credentials."}, func() float64 { return float64(clients()) }),
		pipelines: map[types.NamespacedName]*pipelineSeries{},
	}
	if reg != nil {
		reg.MustRegister(m, m.kafkaClients)
	}
	return m
}

// series is key's entry, made on first use; m.mu is held.
func (m *pipelineMetrics) series(key types.NamespacedName) *pipelineSeries {
	ps, ok := m.pipelines[key]
	if !ok {
		ps = &pipelineSeries{}
		m.pipelines[key] = ps
	}
	return ps
}

// observed updates the lag metrics from one sample. A sample that failed
// counts an error and leaves the figures at their last values.
func (m *pipelineMetrics) observed(key types.NamespacedName, v *lagView, p observeParams) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ps := m.series(key)
	ps.lagBudget = value(float64(p.lagCriticalSeconds))
	if v.Err != nil {
		ps.lagReadErrors = value(ps.lagReadErrors.v + 1)
		return
	}
	ps.lag = value(float64(v.Lag.Total))
	secs := int64(0)
	if v.TimeLagSeconds != nil {
		secs = *v.TimeLagSeconds
	}
	ps.lagSeconds = value(float64(secs))
	if v.RatesKnown {
		ps.ingest, ps.process = value(v.Ingest), value(v.Process)
	}
	if v.DeadLetters != nil {
		ps.deadLetters = value(float64(*v.DeadLetters))
	}
	ps.partitions = ps.partitions[:0]
	for _, pl := range v.Lag.Partitions {
		s := partitionSeries{partition: strconv.Itoa(int(pl.Partition)), lag: float64(pl.Lag)}
		if secs, ok := v.PartitionSeconds[pl.Partition]; ok {
			s.seconds = value(float64(secs))
		}
		ps.partitions = append(ps.partitions, s)
	}
}

// reconciled updates what a reconcile wrote: replicas and conditions.
func (m *pipelineMetrics) reconciled(sp *sluicev1.StreamPipeline, reconcileErrReason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ps := m.series(pipelineKey(sp))
	ps.desired = value(float64(sp.Status.DesiredReplicas))
	ps.replicas = value(float64(sp.Status.Replicas))
	ps.readyReplicas = value(float64(sp.Status.ReadyReplicas))
	// A condition type, once set, keeps its series.
	for _, c := range sp.Status.Conditions {
		i := slices.IndexFunc(ps.conditions, func(cs conditionSeries) bool { return cs.typ == c.Type })
		if i < 0 {
			ps.conditions = append(ps.conditions, conditionSeries{typ: c.Type})
			i = len(ps.conditions) - 1
		}
		ps.conditions[i].status = string(c.Status)
	}
	if reconcileErrReason != "" {
		if ps.reconcileErrors == nil {
			ps.reconcileErrors = map[string]float64{}
		}
		ps.reconcileErrors[reconcileErrReason]++
	}
}

// forget deletes a pipeline's series.
func (m *pipelineMetrics) forget(key types.NamespacedName) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.pipelines, key)
}

// Describe implements prometheus.Collector.
func (m *pipelineMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.lag, m.partitionLag, m.partitionLagSeconds, m.lagSeconds, m.lagBudget, m.ingest, m.process,
		m.deadLetters, m.desired, m.replicas, m.condition, m.reconcileErrors, m.lagReadErrors} {
		ch <- d
	}
}

// conditionStatuses are the statuses each condition type has a series for.
var conditionStatuses = [...]string{"True", "False", "Unknown"}

// Collect implements prometheus.Collector: the series of every pipeline, from
// its last figures.
func (m *pipelineMetrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for key, ps := range m.pipelines {
		ns, name := key.Namespace, key.Name
		gauge := func(d *prometheus.Desc, v optionalValue, extra ...string) {
			if v.ok {
				ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v.v, append([]string{ns, name}, extra...)...)
			}
		}
		gauge(m.lagBudget, ps.lagBudget)
		gauge(m.lag, ps.lag)
		gauge(m.lagSeconds, ps.lagSeconds)
		gauge(m.ingest, ps.ingest)
		gauge(m.process, ps.process)
		gauge(m.deadLetters, ps.deadLetters)
		for _, p := range ps.partitions {
			gauge(m.partitionLag, value(p.lag), p.partition)
			gauge(m.partitionLagSeconds, p.seconds, p.partition)
		}
		gauge(m.desired, ps.desired)
		gauge(m.replicas, ps.replicas, "current")
		gauge(m.replicas, ps.readyReplicas, "ready")
		for _, c := range ps.conditions {
			for _, st := range conditionStatuses {
				v := 0.0
				if c.status == st {
					v = 1
				}
				gauge(m.condition, value(v), c.typ, st)
			}
		}
		for reason, n := range ps.reconcileErrors {
			ch <- prometheus.MustNewConstMetric(m.reconcileErrors, prometheus.CounterValue, n, ns, name, reason)
		}
		if ps.lagReadErrors.ok {
			ch <- prometheus.MustNewConstMetric(m.lagReadErrors, prometheus.CounterValue, ps.lagReadErrors.v, ns, name)
		}
	}
}
