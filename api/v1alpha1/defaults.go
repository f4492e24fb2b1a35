package v1alpha1

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/internal/workerconfig"
)

// Defaults of the API. The CRD applies the same values through +kubebuilder:default
// markers at admission; the getters below fall back to them too, so that code
// handling an object that never went through the API server (a unit test, a
// client-side render) sees the same effective values.
const (
	DefaultMaxPollRecords         int32 = 100
	DefaultMaxInFlight            int32 = 64
	DefaultMaxPollInterval              = 10 * time.Minute
	DefaultSessionTimeout               = 45 * time.Second
	DefaultHeartbeatInterval            = 3 * time.Second
	DefaultFetchMaxWait                 = 500 * time.Millisecond
	DefaultFetchMaxBytes                = workerconfig.DefaultFetchMaxBytes
	DefaultMaxPartitionFetchBytes       = workerconfig.DefaultMaxPartitionFetchBytes
	DefaultProcessingTimeout            = 30 * time.Second
	DefaultHTTPTimeout                  = 5 * time.Second
	DefaultRetryAttempts          int32 = 3
	DefaultBackoffInitial               = time.Second
	DefaultBackoffMultiplier      int32 = 4
	DefaultBackoffMax                   = 10 * time.Minute
	DefaultFailureThreshold       int32 = 5
	DefaultOpenDuration                 = 60 * time.Second
	DefaultWarmupRecordsPerSecond int32 = 100
	DefaultWarmupDuration               = 2 * time.Minute
	DefaultMaxJitter                    = 30 * time.Second
	DefaultMinReplicas            int32 = 1
	DefaultMaxReplicas            int32 = 10
	DefaultLagThreshold           int64 = 1000
	DefaultMaxScaleUpStep         int32 = 4
	DefaultPollInterval                 = 2 * time.Second
	DefaultScaleDownStabilization       = 5 * time.Minute
	DefaultLagCriticalSeconds     int32 = 300
	DefaultReplicationFactor      int32 = 3
	DefaultMinInSyncReplicas      int32 = 2
	DefaultRetention                    = 7 * 24 * time.Hour
	DefaultPostgresKeyColumn            = "id"
	DefaultPostgresPayloadColumn        = "payload"

	// PollRecordsPerInFlight is how many records a poll holds per record
	// allowed in flight by default, with ordering Key or Unordered: a poll of
	// exactly maxInFlight records keeps the sink busy only while none of them
	// has finished and no two share a key; four times as many leave records
	// of other keys to start when one finishes or waits for its key.
	PollRecordsPerInFlight int32 = 4

	// DeadLetterSuffix and RetrySuffix name the default retry and dead-letter
	// topics after the effective consumer group: "<group>.retry.<n>",
	// "<group>.dlq". The topics belong to the group (it consumes the retry
	// topics), so two pipelines reading one source topic get topics of their own.
	DeadLetterSuffix = ".dlq"
	RetrySuffix      = ".retry"
)

// ConsumerGroup is the effective consumer group: spec.source.consumerGroup, or
// "<namespace>.<name>".
func (sp *StreamPipeline) ConsumerGroup() string {
	if sp.Spec.Source.ConsumerGroup != "" {
		return sp.Spec.Source.ConsumerGroup
	}
	return sp.Namespace + "." + sp.Name
}

// DeadLetterTopic is the effective dead-letter topic:
// spec.delivery.deadLetterTopic, or "<consumer group>.dlq".
func (sp *StreamPipeline) DeadLetterTopic() string {
	if sp.Spec.Delivery.DeadLetterTopic != "" {
		return sp.Spec.Delivery.DeadLetterTopic
	}
	return sp.ConsumerGroup() + DeadLetterSuffix
}

// GroupTypeOf is the effective spec.source.groupType.
func (sp *StreamPipeline) GroupTypeOf() GroupType {
	if sp.Spec.Source.GroupType == "" {
		return GroupTypeConsumer
	}
	return sp.Spec.Source.GroupType
}

// Static says whether the workers are static members of their consumer
// group (spec.consumer.membership Static): they run as a StatefulSet and join
// with their pod names as group.instance.id.
func (sp *StreamPipeline) Static() bool {
	return sp.Spec.Consumer.Membership == MembershipStatic && !sp.Share()
}

// GroupProtocolOf is the effective spec.consumer.groupProtocol.
func (sp *StreamPipeline) GroupProtocolOf() GroupProtocol {
	if sp.Spec.Consumer.GroupProtocol == "" {
		return GroupProtocolClassic
	}
	return sp.Spec.Consumer.GroupProtocol
}

// NextGenGroup says whether the workers run a KIP-848 consumer group.
func (sp *StreamPipeline) NextGenGroup() bool {
	return !sp.Share() && sp.GroupProtocolOf() == GroupProtocolConsumer
}

// Share says whether the workers consume as a Kafka share group.
func (sp *StreamPipeline) Share() bool { return sp.GroupTypeOf() == GroupTypeShare }

// RetryAttempts is the effective spec.delivery.retry.attempts: how many more
// times a record that failed transiently is tried before it goes to the
// dead-letter topic.
func (sp *StreamPipeline) RetryAttempts() int32 {
	return Int32Or(sp.Spec.Delivery.Retry.Attempts, DefaultRetryAttempts)
}

// Share group limits (Kafka's group.share.* broker settings bound the group
// configs: delivery count 2–10, lock 15–60 s by default).
const (
	// ShareDeliveryCountLimit is the share.delivery.count.limit Sluice sets:
	// Kafka's highest by default. The broker archives a record (drops it,
	// without a dead letter) once it was delivered that many times; the
	// worker dead-letters a record that keeps failing after 1 + retries
	// deliveries itself, so the limit only counts deliveries lost to workers
	// that died holding the record, and the highest leaves the most room for
	// them.
	ShareDeliveryCountLimit = 10
	minShareRecordLock      = 15 * time.Second
	maxShareRecordLock      = 60 * time.Second
	shareLockPerProcessTime = 2
)

// ShareRecordLockDuration is the share.record.lock.duration.ms Sluice sets on
// a share group: how long a worker holds a record before the broker gives it
// to another. Twice the processing timeout within Kafka's default bounds
// (15–60 s): a hung worker's records move on soon, and a worker whose records
// wait longer in its batch renews their locks.
func (sp *StreamPipeline) ShareRecordLockDuration() time.Duration {
	return min(max(shareLockPerProcessTime*sp.Timings().ProcessingTimeout, minShareRecordLock), maxShareRecordLock)
}

// RetryTopics are the effective retry topics, in the order a failing record
// visits them. A share group has none: its retries are the broker's
// redeliveries.
func (sp *StreamPipeline) RetryTopics() []string {
	if sp.Share() {
		return nil
	}
	prefix := sp.Spec.Delivery.Retry.TopicPrefix
	if prefix == "" {
		prefix = sp.ConsumerGroup() + RetrySuffix
	}
	n := sp.RetryAttempts()
	topics := make([]string, 0, n)
	for i := int32(1); i <= n; i++ {
		topics = append(topics, fmt.Sprintf("%s.%d", prefix, i))
	}
	return topics
}

// Semantics is the effective delivery guarantee.
func (sp *StreamPipeline) Semantics() DeliverySemantics {
	if sp.Spec.Delivery.Semantics == "" {
		return AtLeastOnce
	}
	return sp.Spec.Delivery.Semantics
}

// Ordering is the effective spec.processing.ordering.
func (sp *StreamPipeline) Ordering() Ordering {
	if sp.Spec.Processing.Ordering == "" {
		return OrderingPartition
	}
	return sp.Spec.Processing.Ordering
}

// Concurrent says whether the records of one partition may be at the sink at
// once (ordering Key or Unordered).
func (sp *StreamPipeline) Concurrent() bool {
	o := sp.Ordering()
	return o == OrderingKey || o == OrderingUnordered
}

// MaxInFlight is the effective bound of records at the sink at once: with
// ordering Key or Unordered, spec.processing.maxInFlight across all of a
// worker's partitions (default 64); with Partition, 1 per partition.
func (sp *StreamPipeline) MaxInFlight() int32 {
	if !sp.Concurrent() {
		return 1
	}
	return Int32Or(sp.Spec.Processing.MaxInFlight, DefaultMaxInFlight)
}

// MaxPollRecords is the effective consumer.maxPollRecords: the value set, or
// 100 with ordering Partition; with Key or Unordered 4 × maxInFlight and at
// least 100, so that a poll holds enough records to keep maxInFlight busy
// (the admission rules refuse a value set below maxInFlight). Not stored by
// the API server: it follows processing when that changes.
func (sp *StreamPipeline) MaxPollRecords() int32 {
	if p := sp.Spec.Consumer.MaxPollRecords; p != nil {
		return *p
	}
	if !sp.Concurrent() {
		return DefaultMaxPollRecords
	}
	return max(DefaultMaxPollRecords, PollRecordsPerInFlight*sp.MaxInFlight())
}

// StartFrom is the effective start position for a group with no committed offset.
func (sp *StreamPipeline) StartFrom() StartFrom {
	if sp.Spec.Source.StartFrom == "" {
		return StartFromEarliest
	}
	return sp.Spec.Source.StartFrom
}

// PositionStartFrom is where a partition with no committed offset is read
// from, by the workers and in the lag figures. It is StartFrom until the
// operator has committed the group's starting offsets
// (status.startingOffsetsCommitted); after that a partition without a committed
// offset can only be one added to the topic later, and all of its records
// arrived after the pipeline started, so it is read from its beginning.
func (sp *StreamPipeline) PositionStartFrom() StartFrom {
	if sp.Status.StartingOffsetsCommitted != nil {
		return StartFromEarliest
	}
	return sp.StartFrom()
}

// ConsumerTimings are a pipeline's effective poll timings.
type ConsumerTimings struct {
	MaxPollInterval, SessionTimeout, HeartbeatInterval, ProcessingTimeout time.Duration
}

// Timings are the poll timings the spec sets and, for the ones it leaves out,
// defaults that fit the ones it sets, so that a single setting never
// contradicts a default the user didn't write (sessionTimeout: 10s alone gets
// a 3 s heartbeat, not 15 s; maxPollInterval: 30s alone gets a 15 s session
// and a 30 s processing timeout). The admission rules refuse only
// contradictions between settings the user wrote.
func (sp *StreamPipeline) Timings() ConsumerTimings {
	c, d := sp.Spec.Consumer, sp.Spec.Delivery
	var t ConsumerTimings
	if c.MaxPollInterval != nil {
		t.MaxPollInterval = c.MaxPollInterval.Duration
	} else {
		t.MaxPollInterval = DefaultMaxPollInterval
		if c.SessionTimeout != nil {
			t.MaxPollInterval = max(t.MaxPollInterval, 2*c.SessionTimeout.Duration)
		}
		if d.ProcessingTimeout != nil {
			t.MaxPollInterval = max(t.MaxPollInterval, d.ProcessingTimeout.Duration)
		}
	}
	if c.SessionTimeout != nil {
		t.SessionTimeout = c.SessionTimeout.Duration
	} else {
		t.SessionTimeout = min(DefaultSessionTimeout, t.MaxPollInterval/2)
		if c.HeartbeatInterval != nil {
			t.SessionTimeout = max(t.SessionTimeout, 3*c.HeartbeatInterval.Duration)
		}
	}
	t.HeartbeatInterval = DurationOr(c.HeartbeatInterval, min(DefaultHeartbeatInterval, t.SessionTimeout/3))
	t.ProcessingTimeout = DurationOr(d.ProcessingTimeout, min(DefaultProcessingTimeout, t.MaxPollInterval))
	return t
}

// RetryBackoff is the effective retry backoff: a default initial delay is at
// most the max set, a default max at least the initial set and at most half
// the retry topics' retention (a retry must not expire before it is due).
func (sp *StreamPipeline) RetryBackoff() (initial, maximum time.Duration) {
	b := sp.Spec.Delivery.Retry.Backoff
	if b.Max != nil {
		maximum = b.Max.Duration
	} else {
		maximum = DefaultBackoffMax
		if b.Initial != nil {
			maximum = max(maximum, b.Initial.Duration)
		}
		maximum = min(maximum, DurationOr(sp.Spec.Topics.Retention, DefaultRetention)/2)
	}
	return DurationOr(b.Initial, min(DefaultBackoffInitial, maximum)), maximum
}

// RetryChainDelay is how long a record that fails every time spends waiting
// in the retry topics before it is dead-lettered: the sum of the backoffs of
// its retries.
func (sp *StreamPipeline) RetryChainDelay() time.Duration {
	initial, maximum := sp.RetryBackoff()
	mult := time.Duration(Int32Or(sp.Spec.Delivery.Retry.Backoff.Multiplier, DefaultBackoffMultiplier))
	var total time.Duration
	d := initial
	for range sp.RetryAttempts() {
		total += min(d, maximum)
		d = min(d*mult, maximum)
	}
	return total
}

// WarmupRecordsPerSecond is the effective start of the rate ramp: at most the
// steady limit when only that is set.
func (sp *StreamPipeline) WarmupRecordsPerSecond() int32 {
	r := sp.Spec.RateLimit
	if r.Warmup.RecordsPerSecond != nil {
		return *r.Warmup.RecordsPerSecond
	}
	if r.RecordsPerSecond != nil {
		return min(DefaultWarmupRecordsPerSecond, *r.RecordsPerSecond)
	}
	return DefaultWarmupRecordsPerSecond
}

// EffectiveMinReplicas is the effective lower replica bound.
func (s ScalingSpec) EffectiveMinReplicas() int32 { return Int32Or(s.MinReplicas, DefaultMinReplicas) }

// EffectiveMaxReplicas is the effective upper replica bound.
func (s ScalingSpec) EffectiveMaxReplicas() int32 { return Int32Or(s.MaxReplicas, DefaultMaxReplicas) }

// Int32Or returns *p, or def when p is nil.
func Int32Or(p *int32, def int32) int32 {
	if p == nil {
		return def
	}
	return *p
}

// Int64Or returns *p, or def when p is nil.
func Int64Or(p *int64, def int64) int64 {
	if p == nil {
		return def
	}
	return *p
}

// DurationOr returns d's value, or def when d is nil.
func DurationOr(d *metav1.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.Duration
}
