package worker

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names, one meaning each; docs/worker.md documents them.
const (
	metricRecords         = "sluice_worker_records_total"
	metricErrors          = "sluice_worker_errors_total"
	metricRetries         = "sluice_worker_retries_total"
	metricProcessing      = "sluice_worker_sink_call_duration_seconds"
	metricEndToEnd        = "sluice_worker_end_to_end_latency_seconds"
	metricCircuitState    = "sluice_worker_circuit_state"
	metricInFlight        = "sluice_worker_in_flight_records"
	metricPaused          = "sluice_worker_paused_partitions"
	metricCommits         = "sluice_worker_commits_total"
	metricParkFailures    = "sluice_worker_park_failures_total"
	metricRateLimit       = "sluice_worker_rate_limit_records_per_second"
	metricProducerResets  = "sluice_worker_producer_resets_total"
	metricRebalances      = "sluice_worker_rebalances_total"
	metricSinkOpenErrors  = "sluice_worker_sink_open_failures_total"
	metricDBRewinds       = "sluice_worker_database_rewinds_total"
	metricDurabilityRisks = "sluice_worker_sink_durability_risks"
	metricShareAckErrors  = "sluice_worker_share_ack_failures_total"
	metricShareExpired    = "sluice_worker_share_lock_expired_records_total"
	outcomeProcessed      = "processed"
	outcomeRetried        = "retried"
	outcomeDeadLettered   = "dead_lettered"
	outcomeDuplicate      = "duplicate"
	circuitClosed         = 0
	circuitHalfOpen       = 1
	circuitOpen           = 2
	commitResultSucceeded = "succeeded"
	commitResultFailed    = "failed"
)

type metrics struct {
	records        *prometheus.CounterVec
	errors         *prometheus.CounterVec
	processing     prometheus.Histogram
	endToEnd       prometheus.Histogram
	circuit        prometheus.Gauge
	inFlight       prometheus.Gauge
	paused         prometheus.Gauge
	commits        *prometheus.CounterVec
	parkFailures   prometheus.Counter
	rateLimit      prometheus.Gauge
	producerResets prometheus.Counter
	rebalances     *prometheus.CounterVec
	// sinkOpenFailures counts failed attempts to open the sink at start.
	sinkOpenFailures prometheus.Counter
	// dbRewinds counts partitions sent back to the database's stored offset
	// after it lost acknowledged commits (offsets in PostgreSQL).
	dbRewinds prometheus.Counter
	// durabilityRisks is how many settings let the sink's database forget
	// acknowledged commits.
	durabilityRisks prometheus.Gauge
	// shareAckFailures counts share-group acknowledgements the broker refused.
	shareAckFailures prometheus.Counter
	// shareLockExpired counts records polled after their lock ran out.
	shareLockExpired prometheus.Counter

	processed, retried, deadLettered, duplicates prometheus.Counter
	// retries counts the records parked in each retry level.
	retries *prometheus.CounterVec
}

// parkedForRetry counts a record parked in retry level level.
func (m *metrics) parkedForRetry(level int) {
	m.retried.Inc()
	m.retries.WithLabelValues(strconv.Itoa(level)).Inc()
}

func newMetrics(reg prometheus.Registerer, pipeline string) *metrics {
	labels := prometheus.Labels{"pipeline": pipeline}
	m := &metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricRecords, ConstLabels: labels,
			Help: "Records handled, by outcome: processed (the sink acknowledged), retried (parked in a retry topic, or released for redelivery in a share group), dead_lettered, duplicate (ExactlyOnce: a copy of a record already written, not written again)."}, []string{"outcome"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricErrors, ConstLabels: labels,
			Help: "Record failures by error class (transient, poison)."}, []string{"class"}),
		processing: prometheus.NewHistogram(prometheus.HistogramOpts{Name: metricProcessing, ConstLabels: labels,
			Help: "Duration of one sink call (one record for http, one batch for the others).", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		endToEnd: prometheus.NewHistogram(prometheus.HistogramOpts{Name: metricEndToEnd, ConstLabels: labels,
			Help: "Time from the source record's timestamp to the sink's acknowledgement.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 22)}),
		circuit: prometheus.NewGauge(prometheus.GaugeOpts{Name: metricCircuitState, ConstLabels: labels,
			Help: "Circuit breaker state around the sink: 0 closed, 1 half-open, 2 open."}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{Name: metricInFlight, ConstLabels: labels,
			Help: "Records polled and not yet finished."}),
		paused: prometheus.NewGauge(prometheus.GaugeOpts{Name: metricPaused, ConstLabels: labels,
			Help: "Partitions paused (retry not due, circuit open, or a failed park)."}),
		commits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricCommits, ConstLabels: labels,
			Help: "Offset commits by result."}, []string{"result"}),
		parkFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: metricParkFailures, ConstLabels: labels,
			Help: "Failed produces to a retry or dead-letter topic; the record is re-read, never dropped."}),
		rateLimit: prometheus.NewGauge(prometheus.GaugeOpts{Name: metricRateLimit, ConstLabels: labels,
			Help: "Current rate limit (records/s per worker); +Inf when unlimited."}),
	}
	m.producerResets = prometheus.NewCounter(prometheus.CounterOpts{Name: metricProducerResets, ConstLabels: labels,
		Help: "Times the producer of parked copies was replaced after it stopped making progress."})
	m.rebalances = prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricRebalances, ConstLabels: labels,
		Help: "Group rebalances this member took part in, by kind: assigned (partitions given), revoked (taken back cleanly), lost (session expired)."}, []string{"kind"})
	m.sinkOpenFailures = prometheus.NewCounter(prometheus.CounterOpts{Name: metricSinkOpenErrors, ConstLabels: labels,
		Help: "Failed attempts to open the sink at start (e.g. the database is down); the worker stays unready and retries with backoff."})
	m.dbRewinds = prometheus.NewCounter(prometheus.CounterOpts{Name: metricDBRewinds, ConstLabels: labels,
		Help: "ExactlyOnce postgres: partitions sent back to the offset stored in the database because it lost commits it had acknowledged; the records after it are written again."})
	m.durabilityRisks = prometheus.NewGauge(prometheus.GaugeOpts{Name: metricDurabilityRisks, ConstLabels: labels,
		Help: "Settings of the sink's database under which it can forget commits it acknowledged (synchronous_commit=off, fsync=off); 0 when none."})
	m.retries = prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricRetries, ConstLabels: labels,
		Help: "Records parked in a retry topic, by level: 1 for the first retry topic (<prefix>.1), and so on (groupType Share: records released for redelivery, by the delivery that failed). Their sum is sluice_worker_records_total{outcome=\"retried\"}."}, []string{"level"})
	m.shareAckFailures = prometheus.NewCounter(prometheus.CounterOpts{Name: metricShareAckErrors, ConstLabels: labels,
		Help: "groupType Share: acknowledgements the broker refused (a lock that expired first, a lost session); those records are delivered again."})
	m.shareLockExpired = prometheus.NewCounter(prometheus.CounterOpts{Name: metricShareExpired, ConstLabels: labels,
		Help: "groupType Share: records that reached the worker after their lock ran out (fetched ahead while it held a round through an open circuit); released unhandled, the broker delivers them again."})
	reg.MustRegister(m.retries, m.shareAckFailures, m.shareLockExpired)
	reg.MustRegister(m.records, m.errors, m.processing, m.endToEnd, m.circuit, m.inFlight, m.paused, m.commits, m.parkFailures, m.rateLimit, m.producerResets, m.rebalances, m.sinkOpenFailures, m.dbRewinds, m.durabilityRisks)
	m.processed = m.records.WithLabelValues(outcomeProcessed)
	m.retried = m.records.WithLabelValues(outcomeRetried)
	m.deadLettered = m.records.WithLabelValues(outcomeDeadLettered)
	m.duplicates = m.records.WithLabelValues(outcomeDuplicate)
	return m
}
