package controllers

import (
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/lag"
)

// TestPipelineMetricsShowTheLastFigures pins the series a pipeline has through
// its life: figures from the samples (a failed one counts an error and keeps
// the last figures; unknown rates, dead letters and time lags have no series;
// partitions that are gone lose theirs), replicas and every condition type it
// has had from the reconciles, and nothing once it is forgotten.
func TestPipelineMetricsShowTheLastFigures(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newPipelineMetrics(reg, func() int { return 1 })
	key := types.NamespacedName{Namespace: "ns", Name: "orders"}
	other := types.NamespacedName{Namespace: "ns", Name: "other"}
	params := observeParams{lagCriticalSeconds: 300}
	names := []string{metricLag, metricPartitionLag, metricPartitionLagS, metricLagSeconds, metricLagBudget, metricIngestRate,
		metricProcessRate, metricDeadLetters, metricDesired, metricReplicas, metricCondition, metricReconcileError, metricLagReadErrors, metricKafkaClients}
	expect := func(t *testing.T, want string) {
		t.Helper()
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
			t.Fatal(err)
		}
	}
	const help = `
# HELP sluice_kafka_clients Kafka clients the operator holds open: one per cluster and credentials.
# TYPE sluice_kafka_clients gauge
sluice_kafka_clients 1
`

	secs, dlq := int64(40), int64(3)
	m.observed(key, &lagView{
		Lag:              lag.Lag{Total: 12, Partitions: []lag.PartitionLag{{Partition: 0, Lag: 10}, {Partition: 1, Lag: 2}}},
		TimeLagSeconds:   &secs,
		PartitionSeconds: map[int32]int64{0: 40},
		DeadLetters:      &dlq,
	}, params)
	m.observed(other, &lagView{}, params)
	m.forget(other)
	expect(t, help+`
# HELP sluice_pipeline_dead_letter_records Records in the dead-letter topic.
# TYPE sluice_pipeline_dead_letter_records gauge
sluice_pipeline_dead_letter_records{namespace="ns",pipeline="orders"} 3
# HELP sluice_pipeline_lag_critical_seconds spec.scaling.lagCriticalSeconds: the lag budget in seconds of ingest.
# TYPE sluice_pipeline_lag_critical_seconds gauge
sluice_pipeline_lag_critical_seconds{namespace="ns",pipeline="orders"} 300
# HELP sluice_pipeline_lag_records Consumer group lag over all source partitions, in records.
# TYPE sluice_pipeline_lag_records gauge
sluice_pipeline_lag_records{namespace="ns",pipeline="orders"} 12
# HELP sluice_pipeline_lag_seconds Age of the oldest record the group has not consumed, in seconds (0 without lag).
# TYPE sluice_pipeline_lag_seconds gauge
sluice_pipeline_lag_seconds{namespace="ns",pipeline="orders"} 40
# HELP sluice_pipeline_partition_lag_records Consumer group lag of one source partition, in records.
# TYPE sluice_pipeline_partition_lag_records gauge
sluice_pipeline_partition_lag_records{namespace="ns",partition="0",pipeline="orders"} 10
sluice_pipeline_partition_lag_records{namespace="ns",partition="1",pipeline="orders"} 2
# HELP sluice_pipeline_partition_lag_seconds Time lag of one source partition: the age of its oldest unconsumed record, 0 without lag; absent while that age is unknown.
# TYPE sluice_pipeline_partition_lag_seconds gauge
sluice_pipeline_partition_lag_seconds{namespace="ns",partition="0",pipeline="orders"} 40
`)

	// A failed sample, then one with fewer partitions and rates; a reconcile
	// that failed and one that set other conditions.
	m.observed(key, &lagView{Err: errors.New("brokers down")}, params)
	m.observed(key, &lagView{Lag: lag.Lag{Total: 1, Partitions: []lag.PartitionLag{{Partition: 0, Lag: 1}}}, RatesKnown: true, Ingest: 5, Process: 4}, params)
	sp := &sluicev1.StreamPipeline{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "orders"}}
	sp.Status.DesiredReplicas, sp.Status.Replicas, sp.Status.ReadyReplicas = 2, 2, 1
	sp.Status.Conditions = []metav1.Condition{{Type: sluicev1.ConditionReady, Status: metav1.ConditionFalse}}
	m.reconciled(sp, sluicev1.ReasonKafkaUnreachable)
	sp.Status.Conditions = []metav1.Condition{{Type: sluicev1.ConditionStalled, Status: metav1.ConditionUnknown}}
	m.reconciled(sp, "")
	expect(t, help+`
# HELP sluice_pipeline_condition 1 for the pipeline's current status of each condition type, 0 for the other statuses.
# TYPE sluice_pipeline_condition gauge
sluice_pipeline_condition{namespace="ns",pipeline="orders",status="False",type="Ready"} 1
sluice_pipeline_condition{namespace="ns",pipeline="orders",status="True",type="Ready"} 0
sluice_pipeline_condition{namespace="ns",pipeline="orders",status="Unknown",type="Ready"} 0
sluice_pipeline_condition{namespace="ns",pipeline="orders",status="False",type="Stalled"} 0
sluice_pipeline_condition{namespace="ns",pipeline="orders",status="True",type="Stalled"} 0
sluice_pipeline_condition{namespace="ns",pipeline="orders",status="Unknown",type="Stalled"} 1
# HELP sluice_pipeline_dead_letter_records Records in the dead-letter topic.
# TYPE sluice_pipeline_dead_letter_records gauge
sluice_pipeline_dead_letter_records{namespace="ns",pipeline="orders"} 3
# HELP sluice_pipeline_desired_replicas Worker replicas the operator asks for.
# TYPE sluice_pipeline_desired_replicas gauge
sluice_pipeline_desired_replicas{namespace="ns",pipeline="orders"} 2
# HELP sluice_pipeline_ingest_records_per_second Records per second arriving at the source topic.
# TYPE sluice_pipeline_ingest_records_per_second gauge
sluice_pipeline_ingest_records_per_second{namespace="ns",pipeline="orders"} 5
# HELP sluice_pipeline_lag_critical_seconds spec.scaling.lagCriticalSeconds: the lag budget in seconds of ingest.
# TYPE sluice_pipeline_lag_critical_seconds gauge
sluice_pipeline_lag_critical_seconds{namespace="ns",pipeline="orders"} 300
# HELP sluice_pipeline_lag_read_errors_total Lag samples that failed (unreachable cluster, missing topic).
# TYPE sluice_pipeline_lag_read_errors_total counter
sluice_pipeline_lag_read_errors_total{namespace="ns",pipeline="orders"} 1
# HELP sluice_pipeline_lag_records Consumer group lag over all source partitions, in records.
# TYPE sluice_pipeline_lag_records gauge
sluice_pipeline_lag_records{namespace="ns",pipeline="orders"} 1
# HELP sluice_pipeline_lag_seconds Age of the oldest record the group has not consumed, in seconds (0 without lag).
# TYPE sluice_pipeline_lag_seconds gauge
sluice_pipeline_lag_seconds{namespace="ns",pipeline="orders"} 0
# HELP sluice_pipeline_partition_lag_records Consumer group lag of one source partition, in records.
# TYPE sluice_pipeline_partition_lag_records gauge
sluice_pipeline_partition_lag_records{namespace="ns",partition="0",pipeline="orders"} 1
# HELP sluice_pipeline_process_records_per_second Records per second the group commits.
# TYPE sluice_pipeline_process_records_per_second gauge
sluice_pipeline_process_records_per_second{namespace="ns",pipeline="orders"} 4
# HELP sluice_pipeline_reconcile_errors_total Reconciles of a pipeline that failed, by reason.
# TYPE sluice_pipeline_reconcile_errors_total counter
sluice_pipeline_reconcile_errors_total{namespace="ns",pipeline="orders",reason="KafkaUnreachable"} 1
# HELP sluice_pipeline_replicas Worker replicas the Deployment has, and ready.
# TYPE sluice_pipeline_replicas gauge
sluice_pipeline_replicas{namespace="ns",pipeline="orders",state="current"} 2
sluice_pipeline_replicas{namespace="ns",pipeline="orders",state="ready"} 1
`)

	m.forget(key)
	expect(t, help)
}
