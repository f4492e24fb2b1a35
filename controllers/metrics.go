package controllers

import (
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

// pipelineMetrics are the operator's per-pipeline metrics. Series of a deleted
// pipeline are removed with it.
type pipelineMetrics struct {
	lag, lagSeconds, lagBudget, ingest, process, deadLetters, desired, replicas *prometheus.GaugeVec
	partitionLag, partitionLagSeconds                                           *prometheus.GaugeVec
	condition                                                                   *prometheus.GaugeVec
	reconcileErrors, lagReadErrors                                              *prometheus.CounterVec
	kafkaClients                                                                prometheus.GaugeFunc

	mu         sync.Mutex
	partitions map[types.NamespacedName]int // partition series present, to delete the ones gone
}

func newPipelineMetrics(reg prometheus.Registerer, clients func() int) *pipelineMetrics {
	pl := []string{"namespace", "pipeline"}
	gauge := func(name, help string, extra ...string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, append(pl[:2:2], extra...))
	}
	m := &pipelineMetrics{
		lag:                 gauge(metricLag, "Consumer group lag over all source partitions, in records."),
		partitionLag:        gauge(metricPartitionLag, "Consumer group lag of one source partition, in records.", "partition"),
		partitionLagSeconds: gauge(metricPartitionLagS, "Time lag of one source partition: the age of its oldest unconsumed record, 0 without lag; absent while that age is unknown.", "partition"),
		lagSeconds:          gauge(metricLagSeconds, "Age of the oldest record the group has not consumed, in seconds (0 without lag)."),
		lagBudget:           gauge(metricLagBudget, "spec.scaling.lagCriticalSeconds: the lag budget in seconds of ingest."),
		ingest:              gauge(metricIngestRate, "Records per second arriving at the source topic."),
		process:             gauge(metricProcessRate, "Records per second the group commits."),
		deadLetters:         gauge(metricDeadLetters, "Records in the dead-letter topic."),
		desired:             gauge(metricDesired, "Worker replicas the operator asks for."),
		replicas:            gauge(metricReplicas, "Worker replicas the Deployment has, and ready.", "state"),
		condition:           gauge(metricCondition, "1 for the pipeline's current status of each condition type, 0 for the other statuses.", "type", "status"),
		reconcileErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricReconcileError,
			Help: "Reconciles of a pipeline that failed, by reason."}, []string{"namespace", "pipeline", "reason"}),
		lagReadErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricLagReadErrors,
			Help: "Lag samples that failed (unreachable cluster, missing topic)."}, pl),
		kafkaClients: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: metricKafkaClients,
			Help: "Kafka clients the operator holds open: one per cluster and credentials."}, func() float64 { return float64(clients()) }),
		partitions: map[types.NamespacedName]int{},
	}
	if reg != nil {
		reg.MustRegister(m.lag, m.partitionLag, m.partitionLagSeconds, m.lagSeconds, m.lagBudget, m.ingest, m.process, m.deadLetters,
			m.desired, m.replicas, m.condition, m.reconcileErrors, m.lagReadErrors, m.kafkaClients)
	}
	return m
}

// observed updates the lag metrics from one sample.
func (m *pipelineMetrics) observed(key types.NamespacedName, v *lagView, p observeParams) {
	ns, name := key.Namespace, key.Name
	m.lagBudget.WithLabelValues(ns, name).Set(float64(p.lagCriticalSeconds))
	if v.Err != nil {
		m.lagReadErrors.WithLabelValues(ns, name).Inc()
		return
	}
	m.lag.WithLabelValues(ns, name).Set(float64(v.Lag.Total))
	secs := int64(0)
	if v.TimeLagSeconds != nil {
		secs = *v.TimeLagSeconds
	}
	m.lagSeconds.WithLabelValues(ns, name).Set(float64(secs))
	if v.RatesKnown {
		m.ingest.WithLabelValues(ns, name).Set(v.Ingest)
		m.process.WithLabelValues(ns, name).Set(v.Process)
	}
	if v.DeadLetters != nil {
		m.deadLetters.WithLabelValues(ns, name).Set(float64(*v.DeadLetters))
	}
	m.mu.Lock()
	for p := len(v.Lag.Partitions); p < m.partitions[key]; p++ {
		m.partitionLag.DeleteLabelValues(ns, name, strconv.Itoa(p))
		m.partitionLagSeconds.DeleteLabelValues(ns, name, strconv.Itoa(p))
	}
	m.partitions[key] = len(v.Lag.Partitions)
	m.mu.Unlock()
	for _, p := range v.Lag.Partitions {
		part := strconv.Itoa(int(p.Partition))
		m.partitionLag.WithLabelValues(ns, name, part).Set(float64(p.Lag))
		if secs, ok := v.PartitionSeconds[p.Partition]; ok {
			m.partitionLagSeconds.WithLabelValues(ns, name, part).Set(float64(secs))
		} else {
			m.partitionLagSeconds.DeleteLabelValues(ns, name, part)
		}
	}
}

// reconciled updates what a reconcile wrote: replicas and conditions.
func (m *pipelineMetrics) reconciled(sp *sluicev1.StreamPipeline, reconcileErrReason string) {
	ns, name := sp.Namespace, sp.Name
	m.desired.WithLabelValues(ns, name).Set(float64(sp.Status.DesiredReplicas))
	m.replicas.WithLabelValues(ns, name, "current").Set(float64(sp.Status.Replicas))
	m.replicas.WithLabelValues(ns, name, "ready").Set(float64(sp.Status.ReadyReplicas))
	for _, c := range sp.Status.Conditions {
		for _, st := range []string{"True", "False", "Unknown"} {
			v := 0.0
			if string(c.Status) == st {
				v = 1
			}
			m.condition.WithLabelValues(ns, name, c.Type, st).Set(v)
		}
	}
	if reconcileErrReason != "" {
		m.reconcileErrors.WithLabelValues(ns, name, reconcileErrReason).Inc()
	}
}

// forget deletes a pipeline's series.
func (m *pipelineMetrics) forget(key types.NamespacedName) {
	labels := prometheus.Labels{"namespace": key.Namespace, "pipeline": key.Name}
	for _, v := range []*prometheus.GaugeVec{m.lag, m.partitionLag, m.partitionLagSeconds, m.lagSeconds, m.lagBudget, m.ingest, m.process, m.deadLetters, m.desired, m.replicas, m.condition} {
		v.DeletePartialMatch(labels)
	}
	m.reconcileErrors.DeletePartialMatch(labels)
	m.lagReadErrors.DeletePartialMatch(labels)
	m.mu.Lock()
	delete(m.partitions, key)
	m.mu.Unlock()
}
