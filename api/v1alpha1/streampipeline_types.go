package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Durations in this API are Go duration strings ("500ms", "45s", "10m", "1h30m").
// Each duration field carries the same pattern; CEL rules add positivity and the
// cross-field relations, so a bad value is refused at admission with the field named.

// StreamPipelineSpec is what a team asks for: read a topic, deliver every record to
// one sink, and park what can't be delivered in retry and dead-letter topics.
//
// The rules below see the default topic names when the consumer group is set
// (they derive from it); with the default group ("<namespace>.<name>", which a
// rule can't see) the operator checks the rendered names and stalls instead.
// ('/' stands for "not known here": it is never a topic name.)
//
// +kubebuilder:validation:XValidation:rule="(has(self.delivery.deadLetterTopic) ? self.delivery.deadLetterTopic : (has(self.source.consumerGroup) ? self.source.consumerGroup + '.dlq' : '/')) != self.source.topic",message="delivery.deadLetterTopic (default <consumer group>.dlq) must differ from source.topic",fieldPath=".delivery.deadLetterTopic"
// +kubebuilder:validation:XValidation:rule="!(has(self.delivery.retry.topicPrefix) ? (self.source.topic.startsWith(self.delivery.retry.topicPrefix + '.') && self.source.topic.substring(size(self.delivery.retry.topicPrefix) + 1).matches('^(10|[1-9])$') && int(self.source.topic.substring(size(self.delivery.retry.topicPrefix) + 1)) <= (has(self.delivery.retry.attempts) ? self.delivery.retry.attempts : 3)) : (has(self.source.consumerGroup) && self.source.topic.startsWith(self.source.consumerGroup + '.retry.') && self.source.topic.substring(size(self.source.consumerGroup) + 7).matches('^(10|[1-9])$') && int(self.source.topic.substring(size(self.source.consumerGroup) + 7)) <= (has(self.delivery.retry.attempts) ? self.delivery.retry.attempts : 3)))",message="the retry topics (delivery.retry.topicPrefix + .1, .2, ...; default <consumer group>.retry.N) must not include source.topic",fieldPath=".delivery.retry.topicPrefix"
// +kubebuilder:validation:XValidation:rule="(has(self.delivery.deadLetterTopic) ? self.delivery.deadLetterTopic : (has(self.source.consumerGroup) ? self.source.consumerGroup + '.dlq' : '/')) == '/' || !(has(self.delivery.retry.topicPrefix) ? ((has(self.delivery.deadLetterTopic) ? self.delivery.deadLetterTopic : (has(self.source.consumerGroup) ? self.source.consumerGroup + '.dlq' : '/')).startsWith(self.delivery.retry.topicPrefix + '.') && (has(self.delivery.deadLetterTopic) ? self.delivery.deadLetterTopic : (has(self.source.consumerGroup) ? self.source.consumerGroup + '.dlq' : '/')).substring(size(self.delivery.retry.topicPrefix) + 1).matches('^(10|[1-9])$') && int((has(self.delivery.deadLetterTopic) ? self.delivery.deadLetterTopic : (has(self.source.consumerGroup) ? self.source.consumerGroup + '.dlq' : '/')).substring(size(self.delivery.retry.topicPrefix) + 1)) <= (has(self.delivery.retry.attempts) ? self.delivery.retry.attempts : 3)) : (has(self.source.consumerGroup) && (has(self.delivery.deadLetterTopic) ? self.delivery.deadLetterTopic : (has(self.source.consumerGroup) ? self.source.consumerGroup + '.dlq' : '/')).startsWith(self.source.consumerGroup + '.retry.') && (has(self.delivery.deadLetterTopic) ? self.delivery.deadLetterTopic : (has(self.source.consumerGroup) ? self.source.consumerGroup + '.dlq' : '/')).substring(size(self.source.consumerGroup) + 7).matches('^(10|[1-9])$') && int((has(self.delivery.deadLetterTopic) ? self.delivery.deadLetterTopic : (has(self.source.consumerGroup) ? self.source.consumerGroup + '.dlq' : '/')).substring(size(self.source.consumerGroup) + 7)) <= (has(self.delivery.retry.attempts) ? self.delivery.retry.attempts : 3)))",message="delivery.deadLetterTopic (default <consumer group>.dlq) must not be one of the retry topics (delivery.retry.topicPrefix + .1, .2, ...)",fieldPath=".delivery.deadLetterTopic"
// +kubebuilder:validation:XValidation:rule="!has(self.sink.kafka) || self.sink.kafka.topic != self.source.topic",message="sink.kafka.topic must differ from source.topic (a pipeline must not feed itself)",fieldPath=".sink.kafka.topic"
// +kubebuilder:validation:XValidation:rule="!has(self.sink.kafka) || (self.sink.kafka.topic != (has(self.delivery.deadLetterTopic) ? self.delivery.deadLetterTopic : (has(self.source.consumerGroup) ? self.source.consumerGroup + '.dlq' : '/')) && !(has(self.delivery.retry.topicPrefix) ? (self.sink.kafka.topic.startsWith(self.delivery.retry.topicPrefix + '.') && self.sink.kafka.topic.substring(size(self.delivery.retry.topicPrefix) + 1).matches('^(10|[1-9])$') && int(self.sink.kafka.topic.substring(size(self.delivery.retry.topicPrefix) + 1)) <= (has(self.delivery.retry.attempts) ? self.delivery.retry.attempts : 3)) : (has(self.source.consumerGroup) && self.sink.kafka.topic.startsWith(self.source.consumerGroup + '.retry.') && self.sink.kafka.topic.substring(size(self.source.consumerGroup) + 7).matches('^(10|[1-9])$') && int(self.sink.kafka.topic.substring(size(self.source.consumerGroup) + 7)) <= (has(self.delivery.retry.attempts) ? self.delivery.retry.attempts : 3))))",message="sink.kafka.topic must differ from the dead-letter topic (default <consumer group>.dlq) and the retry topics (default <consumer group>.retry.N)",fieldPath=".sink.kafka.topic"
// +kubebuilder:validation:XValidation:rule="!has(self.source.consumerGroup) || has(self.delivery.deadLetterTopic) || size(self.source.consumerGroup) + 4 <= 249",message="source.consumerGroup is too long for the default dead-letter topic <group>.dlq (Kafka topic names have at most 249 characters): shorten it or set delivery.deadLetterTopic",fieldPath=".source.consumerGroup"
// +kubebuilder:validation:XValidation:rule="!has(self.source.consumerGroup) || has(self.delivery.retry.topicPrefix) || size(self.source.consumerGroup) + 9 <= 249",message="source.consumerGroup is too long for the default retry topics <group>.retry.N (Kafka topic names have at most 249 characters): shorten it or set delivery.retry.topicPrefix",fieldPath=".source.consumerGroup"
// +kubebuilder:validation:XValidation:rule="!has(self.delivery.processingTimeout) || !has(self.consumer.maxPollInterval) || !self.delivery.processingTimeout.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || !self.consumer.maxPollInterval.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || duration(self.delivery.processingTimeout) <= duration(self.consumer.maxPollInterval)",message="delivery.processingTimeout must not exceed consumer.maxPollInterval: a record that takes longer gets its worker evicted from the group",fieldPath=".delivery.processingTimeout"
// +kubebuilder:validation:XValidation:rule="!has(self.delivery.retry.backoff.max) || !has(self.topics.retention) || !self.delivery.retry.backoff.max.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || !self.topics.retention.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || duration(self.delivery.retry.backoff.max) < duration(self.topics.retention)",message="delivery.retry.backoff.max must be shorter than topics.retention: a record parked for a retry would expire before it is due",fieldPath=".delivery.retry.backoff.max"
// +kubebuilder:validation:XValidation:rule="!has(self.delivery.retry.backoff.initial) || has(self.delivery.retry.backoff.max) || !has(self.topics.retention) || !self.delivery.retry.backoff.initial.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || !self.topics.retention.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || duration(self.delivery.retry.backoff.initial) < duration(self.topics.retention)",message="delivery.retry.backoff.initial must be shorter than topics.retention: a record parked for a retry would expire before it is due",fieldPath=".delivery.retry.backoff.initial"
// +kubebuilder:validation:XValidation:rule="!has(self.delivery.semantics) || self.delivery.semantics != 'ExactlyOnce' || has(self.sink.kafka) || has(self.sink.postgres)",message="delivery.semantics ExactlyOnce needs a sink that supports it (kafka or postgres); http and log sinks are at-least-once",fieldPath=".delivery.semantics"
// +kubebuilder:validation:XValidation:rule="!has(self.processing.ordering) || self.processing.ordering == 'Partition' || !has(self.delivery.semantics) || self.delivery.semantics != 'ExactlyOnce'",message="processing.ordering Key and Unordered can't be combined with delivery.semantics ExactlyOnce: exactly-once commits each partition's position in the same transaction as its records (Kafka transactions, offsets in PostgreSQL), and records that finish out of order leave no single position to commit. Use ordering Partition, or delivery.semantics AtLeastOnce with an idempotent sink (postgres ignores duplicate keys; http sends an Idempotency-Key header)",fieldPath=".processing.ordering"
// +kubebuilder:validation:XValidation:rule="!has(self.consumer.maxPollRecords) || !has(self.processing.ordering) || self.processing.ordering == 'Partition' || self.consumer.maxPollRecords >= (has(self.processing.maxInFlight) ? self.processing.maxInFlight : 64)",message="consumer.maxPollRecords must be at least processing.maxInFlight (default 64 with ordering Key or Unordered): one poll is all a worker has in flight. Raise it, or leave it unset for the default of 4 × maxInFlight (at least 100)",fieldPath=".consumer.maxPollRecords"
// +kubebuilder:validation:XValidation:rule="!has(self.source.groupType) || self.source.groupType != 'Share' || !has(self.delivery.semantics) || self.delivery.semantics != 'ExactlyOnce'",message="source.groupType Share can't be combined with delivery.semantics ExactlyOnce: a share group acknowledges records one by one and has no transactions. Use AtLeastOnce with an idempotent sink (postgres ignores duplicate keys; http sends an Idempotency-Key header)",fieldPath=".source.groupType"
// +kubebuilder:validation:XValidation:rule="!has(self.source.groupType) || self.source.groupType != 'Share' || (has(self.processing.ordering) && self.processing.ordering == 'Unordered')",message="source.groupType Share hands the records of one partition to many workers at once, so neither partition nor key order can hold: set processing.ordering Unordered",fieldPath=".processing.ordering"
// +kubebuilder:validation:XValidation:rule="!has(self.consumer.groupProtocol) || self.consumer.groupProtocol != 'Consumer' || !has(self.consumer.membership) || self.consumer.membership != 'Static'",message="consumer.groupProtocol Consumer can't be combined with consumer.membership Static: with KIP-848 Kafka holds a stopped static member's instance ID until its session timeout, so a restarted pod is refused (UNRELEASED_INSTANCE_ID) for up to that long instead of rejoining at once. Use the Classic protocol with Static, or Consumer with Dynamic",fieldPath=".consumer.groupProtocol"
// +kubebuilder:validation:XValidation:rule="!has(self.consumer.groupProtocol) || self.consumer.groupProtocol != 'Consumer' || !has(self.source.groupType) || self.source.groupType != 'Share'",message="consumer.groupProtocol is the protocol of consumer groups; a share group (source.groupType Share) has its own: leave groupProtocol unset",fieldPath=".consumer.groupProtocol"
// +kubebuilder:validation:XValidation:rule="!has(self.consumer.membership) || self.consumer.membership != 'Static' || !has(self.source.groupType) || self.source.groupType != 'Share'",message="consumer.membership Static is for consumer groups (a group.instance.id keeps a member's partitions across its restart); a share group has no partition assignment to keep: leave membership Dynamic",fieldPath=".consumer.membership"
// +kubebuilder:validation:XValidation:rule="!has(self.scaling.minReplicas) || !has(self.scaling.maxReplicas) || self.scaling.minReplicas <= self.scaling.maxReplicas",message="scaling.minReplicas must be less than or equal to scaling.maxReplicas",fieldPath=".scaling.minReplicas"
type StreamPipelineSpec struct {
	// Kafka is the cluster the pipeline reads from (and where its retry and
	// dead-letter topics live).
	// +required
	Kafka KafkaSpec `json:"kafka"`

	// Source is the topic to consume and the consumer group to consume it with.
	// +required
	Source SourceSpec `json:"source"`

	// Sink is where handled records go. Exactly one sink must be set.
	// +required
	Sink SinkSpec `json:"sink"`

	// IdempotencyKey says how to derive the key that makes a redelivered record a
	// no-op at the sink. Default: "<topic>/<partition>/<offset>" of the source record.
	// +optional
	IdempotencyKey *IdempotencyKeySpec `json:"idempotencyKey,omitempty"`

	// Delivery sets the delivery guarantee, retries and the dead-letter topic.
	// +kubebuilder:default={}
	// +optional
	Delivery DeliverySpec `json:"delivery,omitzero"`

	// Processing says which records a worker may hand to the sink at once:
	// one per partition (Partition, the default), many of different keys
	// (Key), or any (Unordered).
	// +kubebuilder:default={}
	// +optional
	Processing ProcessingSpec `json:"processing,omitzero"`

	// Consumer holds the tuned poll settings of the worker's Kafka consumer.
	// +kubebuilder:default={}
	// +optional
	Consumer ConsumerSpec `json:"consumer,omitzero"`

	// CircuitBreaker protects the sink: after FailureThreshold consecutive transient
	// failures the worker pauses its partitions (backpressure) instead of flooding
	// the retry and dead-letter topics.
	// +kubebuilder:default={}
	// +optional
	CircuitBreaker CircuitBreakerSpec `json:"circuitBreaker,omitzero"`

	// RateLimit caps the records per second each worker hands to the sink, with a
	// warm-up ramp after start so that a restarted fleet doesn't stampede.
	// +kubebuilder:default={}
	// +optional
	RateLimit RateLimitSpec `json:"rateLimit,omitzero"`

	// Startup staggers worker starts.
	// +kubebuilder:default={}
	// +optional
	Startup StartupSpec `json:"startup,omitzero"`

	// Scaling bounds the worker replicas and sets the lag-based scaling policy.
	// +kubebuilder:default={}
	// +optional
	Scaling ScalingSpec `json:"scaling,omitzero"`

	// Topics is the policy for the retry and dead-letter topics Sluice provisions.
	// +kubebuilder:default={}
	// +optional
	Topics TopicPolicy `json:"topics,omitzero"`

	// Template overrides parts of the worker pods.
	// +optional
	Template *PodTemplateOverrides `json:"template,omitempty"`

	// Image overrides the worker image. Default: the image the operator runs with.
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:MinLength=1
	// +optional
	Image string `json:"image,omitempty"`

	// Suspend scales the workers to zero and keeps everything else (topics,
	// configuration, consumer group offsets) so that resuming continues where the
	// pipeline stopped.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// KafkaSpec says how to connect to a Kafka cluster.
//
// +kubebuilder:validation:XValidation:rule="!has(self.sasl) || self.sasl.mechanism != 'PLAIN' || has(self.tls)",message="kafka.sasl.mechanism PLAIN sends the password in clear text: set kafka.tls too, or use SCRAM-SHA-512",fieldPath=".sasl.mechanism"
type KafkaSpec struct {
	// BootstrapServers are the host:port pairs the client starts from.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=261
	// +kubebuilder:validation:items:XValidation:rule="self.matches('^([[][0-9a-fA-F:.]+[]]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?):[0-9]{1,5}$') && int(self.substring(self.lastIndexOf(':') + 1)) >= 1 && int(self.substring(self.lastIndexOf(':') + 1)) <= 65535",messageExpression="'must be host:port with a port 1-65535, e.g. kafka-0.kafka:9092 or [::1]:9092, not ' + self"
	// +listType=atomic
	// +required
	BootstrapServers []string `json:"bootstrapServers"`

	// TLS enables TLS. An empty object uses the system trust store.
	// +optional
	TLS *KafkaTLSSpec `json:"tls,omitempty"`

	// SASL enables SASL authentication.
	// +optional
	SASL *KafkaSASLSpec `json:"sasl,omitempty"`
}

// KafkaTLSSpec configures TLS to the brokers. Secrets are mounted into the worker
// pods, never copied.
type KafkaTLSSpec struct {
	// CASecretRef points at the CA bundle (PEM) that signs the brokers' certificates.
	// +optional
	CASecretRef *SecretKeyRef `json:"caSecretRef,omitempty"`

	// ClientCertSecretRef points at a kubernetes.io/tls Secret (tls.crt, tls.key)
	// for mutual TLS.
	// +optional
	ClientCertSecretRef *SecretRef `json:"clientCertSecretRef,omitempty"`
}

// SASLMechanism is a SASL mechanism supported by the worker.
// +kubebuilder:validation:Enum=PLAIN;SCRAM-SHA-256;SCRAM-SHA-512
type SASLMechanism string

// Supported SASL mechanisms.
const (
	SASLPlain       SASLMechanism = "PLAIN"
	SASLScramSHA256 SASLMechanism = "SCRAM-SHA-256"
	SASLScramSHA512 SASLMechanism = "SCRAM-SHA-512"
)

// KafkaSASLSpec configures SASL authentication.
type KafkaSASLSpec struct {
	// Mechanism is the SASL mechanism.
	// +required
	Mechanism SASLMechanism `json:"mechanism"`

	// SecretRef points at a Secret with the keys "username" and "password".
	// +required
	SecretRef SecretRef `json:"secretRef"`
}

// SecretRef names a Secret in the pipeline's namespace.
type SecretRef struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +required
	Name string `json:"name"`
}

// SecretKeyRef names one key of a Secret in the pipeline's namespace.
type SecretKeyRef struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +required
	Name string `json:"name"`

	// Key in the Secret's data.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	// +required
	Key string `json:"key"`
}

// StartFrom says where a consumer group with no committed offset begins.
// +kubebuilder:validation:Enum=Earliest;Latest
type StartFrom string

// Start positions.
const (
	StartFromEarliest StartFrom = "Earliest"
	StartFromLatest   StartFrom = "Latest"
)

// GroupProtocol is the consumer group protocol the workers speak.
type GroupProtocol string

// Group protocols.
const (
	// GroupProtocolClassic: the workers' own balancer assigns partitions
	// (JoinGroup/SyncGroup).
	GroupProtocolClassic GroupProtocol = "Classic"
	// GroupProtocolConsumer: the broker assigns partitions (KIP-848,
	// ConsumerGroupHeartbeat).
	GroupProtocolConsumer GroupProtocol = "Consumer"
)

// Membership is how the workers are members of their consumer group.
type Membership string

// Memberships.
const (
	// MembershipDynamic: every worker start is a new member; a restart is a
	// leave and a join, and the group rebalances for each.
	MembershipDynamic Membership = "Dynamic"
	// MembershipStatic: each worker has a stable group.instance.id (its
	// StatefulSet pod name) and gets its partitions back after a restart
	// without a rebalance.
	MembershipStatic Membership = "Static"
)

// GroupType is the kind of Kafka group the workers consume the source as.
// +kubebuilder:validation:Enum=Consumer;Share
type GroupType string

// Group types.
const (
	// GroupTypeConsumer: a classic consumer group. Each partition belongs to
	// one worker at a time and is handled in offset order; the group commits
	// offsets. Replicas beyond the partition count would idle, so the
	// operator caps them there.
	GroupTypeConsumer GroupType = "Consumer"
	// GroupTypeShare: a Kafka share group (KIP-932, Kafka 4.2 or newer).
	// The broker hands each worker records of any partition and the worker
	// acknowledges each one; replicas scale past the partition count, and no
	// order holds.
	GroupTypeShare GroupType = "Share"
)

// SourceSpec is the topic to consume.
type SourceSpec struct {
	// Topic to consume.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=249
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9._-]+$`
	// +kubebuilder:validation:XValidation:rule="self != '.' && self != '..'",message="topic must not be '.' or '..'"
	// +required
	Topic string `json:"topic"`

	// ConsumerGroup is the Kafka consumer group. Default: "<namespace>.<name>".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9._-]+$`
	// +optional
	ConsumerGroup string `json:"consumerGroup,omitempty"`

	// StartFrom is where a group with no committed offset starts reading.
	// +kubebuilder:default=Earliest
	// +optional
	StartFrom StartFrom `json:"startFrom,omitempty"`

	// GroupType is Consumer (a classic consumer group, the default) or Share (a
	// Kafka share group, Kafka 4.2+: every replica gets records of every
	// partition, so scaling goes past the partition count; records are
	// acknowledged one by one and redelivered by the broker when a worker
	// fails or releases them). Share needs processing.ordering Unordered and
	// delivery.semantics AtLeastOnce; retries are the broker's redeliveries,
	// counted per record, not retry topics. docs/groups.md compares the two.
	// It can't change once set: Kafka keeps a group id to one type.
	// +kubebuilder:default=Consumer
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="source.groupType can't change: Kafka keeps a group id to one group type; create a new pipeline (another consumerGroup) instead"
	// +optional
	GroupType GroupType `json:"groupType,omitempty"`
}

// SinkSpec selects exactly one sink.
//
// +kubebuilder:validation:XValidation:rule="[has(self.http), has(self.postgres), has(self.kafka), has(self.log)].filter(x, x).size() == 1",message="exactly one of sink.http, sink.postgres, sink.kafka or sink.log must be set"
type SinkSpec struct {
	// HTTP POSTs each record to a URL with an Idempotency-Key header.
	// +optional
	HTTP *HTTPSink `json:"http,omitempty"`

	// Postgres inserts each record into a table, ignoring duplicate keys.
	// +optional
	Postgres *PostgresSink `json:"postgres,omitempty"`

	// Kafka produces each record to another topic of the same cluster.
	// +optional
	Kafka *KafkaSink `json:"kafka,omitempty"`

	// Log writes each record to the worker's standard output.
	// +optional
	Log *LogSink `json:"log,omitempty"`
}

// HTTPSink delivers records with HTTP POST. 2xx is success; 408, 429, 5xx and
// timeouts are transient; any other status (4xx, and 3xx: redirects are not
// followed) marks the record as a poison pill.
type HTTPSink struct {
	// URL to POST to: http:// or https://, without credentials (use auth).
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.matches('^https?://[^[:space:]/$.?#][^[:space:]]*$')",message="must be an http:// or https:// URL, e.g. https://orders.shop.svc/events"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^[a-zA-Z]+://[^/?#]*@')",message="must not carry credentials (user:password@host): they would land in the ConfigMap, logs and dead-letter headers; use sink.http.auth with a Secret"
	// +required
	URL string `json:"url"`

	// Auth adds credentials from Secrets to every request (and to the health
	// check). Secrets are mounted into the worker pods, never copied.
	// +optional
	Auth *HTTPAuth `json:"auth,omitempty"`

	// HealthCheck is how a worker's readiness checks that the service is
	// reachable. Default: HEAD to the sink URL, where any answer but 502, 503
	// or 504 counts as reachable (a service that doesn't implement HEAD, with
	// 404, 405 or 501, is still up).
	// +optional
	HealthCheck *HTTPHealthCheck `json:"healthCheck,omitempty"`

	// Timeout of one request.
	// +kubebuilder:default="5s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') && duration(self) > duration('0s')",message="must be a positive Go duration like 30s, 1m30s or 500ms"
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}

// HTTPAuth holds the credentials of the HTTP sink, from Secrets in the
// pipeline's namespace.
//
// +kubebuilder:validation:XValidation:rule="!(has(self.bearerTokenSecretRef) && has(self.basicAuthSecretRef))",message="sink.http.auth: set at most one of bearerTokenSecretRef and basicAuthSecretRef (both set the Authorization header)"
// +kubebuilder:validation:XValidation:rule="!has(self.headers) || !(has(self.bearerTokenSecretRef) || has(self.basicAuthSecretRef)) || self.headers.all(h, h.name.lowerAscii() != 'authorization')",message="sink.http.auth.headers: Authorization is already set by bearerTokenSecretRef or basicAuthSecretRef"
type HTTPAuth struct {
	// BearerTokenSecretRef: "Authorization: Bearer <value of the key>".
	// +optional
	BearerTokenSecretRef *SecretKeyRef `json:"bearerTokenSecretRef,omitempty"`

	// BasicAuthSecretRef: HTTP basic authentication with the Secret's
	// "username" and "password" keys (a kubernetes.io/basic-auth Secret).
	// +optional
	BasicAuthSecretRef *SecretRef `json:"basicAuthSecretRef,omitempty"`

	// Headers are request headers whose values come from Secrets (API keys).
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=name
	// +optional
	Headers []HTTPSecretHeader `json:"headers,omitempty"`
}

// HTTPSecretHeader is one request header whose value is a Secret's key.
type HTTPSecretHeader struct {
	// Name of the header, e.g. X-Api-Key.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9!#$%&*+.^_`|~-]+$')",message="must be an HTTP header name (letters, digits and !#$%&*+.^_`|~-)"
	// +kubebuilder:validation:XValidation:rule="!(self.lowerAscii() in ['host', 'content-length', 'content-type', 'transfer-encoding', 'connection', 'idempotency-key', 'traceparent', 'tracestate', 'baggage'])",message="is set by the worker itself and can't come from a Secret"
	// +required
	Name string `json:"name"`

	// SecretKeyRef holds the header's value.
	// +required
	SecretKeyRef SecretKeyRef `json:"secretKeyRef"`
}

// HTTPHealthMethod is the method of the HTTP sink's health check.
// +kubebuilder:validation:Enum=HEAD;GET;OPTIONS
type HTTPHealthMethod string

// Health check methods.
const (
	HTTPHealthHEAD    HTTPHealthMethod = "HEAD"
	HTTPHealthGET     HTTPHealthMethod = "GET"
	HTTPHealthOPTIONS HTTPHealthMethod = "OPTIONS"
)

// HTTPHealthCheck says how readiness checks the HTTP sink.
type HTTPHealthCheck struct {
	// URL of a health endpoint. Set, the service is healthy when it answers
	// 2xx or 3xx. Default: the sink URL, where any answer but 502, 503 and 504
	// counts as reachable.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.matches('^https?://[^[:space:]/$.?#][^[:space:]]*$')",message="must be an http:// or https:// URL, e.g. http://orders.shop.svc/healthz"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^[a-zA-Z]+://[^/?#]*@')",message="must not carry credentials (user:password@host); the auth headers are sent with the health check"
	// +optional
	URL string `json:"url,omitempty"`

	// Method of the check.
	// +kubebuilder:default=HEAD
	// +optional
	Method HTTPHealthMethod `json:"method,omitempty"`

	// Disabled makes readiness depend on the consumer group only: for a
	// service that has no cheap request to probe. The circuit breaker still
	// protects it.
	// +optional
	Disabled bool `json:"disabled,omitempty"`
}

// PostgresSink inserts records with INSERT ... ON CONFLICT (key) DO NOTHING.
//
// +kubebuilder:validation:XValidation:rule="!has(self.keyColumn) || !has(self.payloadColumn) || self.keyColumn != self.payloadColumn",message="sink.postgres.payloadColumn must differ from keyColumn (default id)",fieldPath=".payloadColumn"
type PostgresSink struct {
	// DSNSecretRef points at the connection string (a libpq URL or key=value DSN).
	// +required
	DSNSecretRef SecretKeyRef `json:"dsnSecretRef"`

	// Table to insert into, optionally schema-qualified. Names are taken as
	// written, case included ("Orders" is not orders).
	// +kubebuilder:validation:MaxLength=127
	// +kubebuilder:validation:Pattern=`^([a-zA-Z_][a-zA-Z0-9_]*\.)?[a-zA-Z_][a-zA-Z0-9_]*$`
	// +required
	Table string `json:"table"`

	// KeyColumn holds the idempotency key. With AtLeastOnce it must have a unique
	// constraint (duplicates are dropped by ON CONFLICT DO NOTHING); with
	// ExactlyOnce the offsets stored in the same transaction make it optional.
	// +kubebuilder:default=id
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-zA-Z_][a-zA-Z0-9_]*$`
	// +optional
	KeyColumn string `json:"keyColumn,omitempty"`

	// PayloadColumn receives the record value.
	// +kubebuilder:default=payload
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-zA-Z_][a-zA-Z0-9_]*$`
	// +optional
	PayloadColumn string `json:"payloadColumn,omitempty"`
}

// KafkaSink produces records to a topic. With ExactlyOnce delivery it uses Kafka
// transactions (consume-transform-produce).
type KafkaSink struct {
	// Topic to produce to.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=249
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9._-]+$`
	// +kubebuilder:validation:XValidation:rule="self != '.' && self != '..'",message="topic must not be '.' or '..'"
	// +required
	Topic string `json:"topic"`
}

// LogFormat is the format of the log sink.
// +kubebuilder:validation:Enum=JSON;Text
type LogFormat string

// Log formats.
const (
	LogFormatJSON LogFormat = "JSON"
	LogFormatText LogFormat = "Text"
)

// LogSink writes records to standard output; useful for trying a pipeline out.
type LogSink struct {
	// Format of each line.
	// +kubebuilder:default=JSON
	// +optional
	Format LogFormat `json:"format,omitempty"`
}

// IdempotencyKeySpec derives the idempotency key from the record. Set one field.
//
// +kubebuilder:validation:XValidation:rule="has(self.header) != has(self.jsonField)",message="idempotencyKey needs exactly one of header or jsonField"
type IdempotencyKeySpec struct {
	// Header whose value is the key.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +optional
	Header string `json:"header,omitempty"`

	// JSONField is a top-level or dotted path ("order.id") into a JSON value. A
	// record without it is a poison pill.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^[^.\s]+(\.[^.\s]+)*$`
	// +optional
	JSONField string `json:"jsonField,omitempty"`
}

// DeliverySemantics is the delivery guarantee.
// +kubebuilder:validation:Enum=AtLeastOnce;ExactlyOnce
type DeliverySemantics string

// Delivery guarantees.
const (
	AtLeastOnce DeliverySemantics = "AtLeastOnce"
	ExactlyOnce DeliverySemantics = "ExactlyOnce"
)

// DeliverySpec sets the delivery guarantee and what happens to records that fail.
type DeliverySpec struct {
	// Semantics is AtLeastOnce (idempotent sinks make duplicates harmless) or
	// ExactlyOnce (kafka sink via transactions; postgres sink via offsets stored in
	// the same transaction).
	// +kubebuilder:default=AtLeastOnce
	// +optional
	Semantics DeliverySemantics `json:"semantics,omitempty"`

	// Retry sends transient failures through retry topics with growing delays.
	// +kubebuilder:default={}
	// +optional
	Retry RetrySpec `json:"retry,omitzero"`

	// DeadLetterTopic receives records that can't be processed, with the error in
	// headers. Default: "<consumer group>.dlq" (the effective group, so two
	// pipelines reading one topic never share a dead-letter topic).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=249
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9._-]+$`
	// +kubebuilder:validation:XValidation:rule="self != '.' && self != '..'",message="topic must not be '.' or '..'"
	// +optional
	DeadLetterTopic string `json:"deadLetterTopic,omitempty"`

	// ProcessingTimeout bounds the handling of one record (sink call included).
	// It must not exceed consumer.maxPollInterval. Default: 30s, or
	// consumer.maxPollInterval when that is set shorter.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') && duration(self) > duration('0s')",message="must be a positive Go duration like 30s, 1m30s or 500ms"
	// +kubebuilder:validation:MaxLength=64
	// +optional
	ProcessingTimeout *metav1.Duration `json:"processingTimeout,omitempty"`
}

// RetrySpec sends a transiently failed record to retry topic 1, 2, ... Attempts,
// each consumed no earlier than its due time, and then to the dead-letter topic.
type RetrySpec struct {
	// Attempts is the number of retry topics (0 sends transient failures straight to
	// the dead-letter topic).
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10
	// +optional
	Attempts *int32 `json:"attempts,omitempty"`

	// Backoff is the delay before each retry.
	// +kubebuilder:default={}
	// +optional
	Backoff BackoffSpec `json:"backoff,omitzero"`

	// TopicPrefix names the retry topics "<prefix>.1" ... "<prefix>.<attempts>".
	// Default: "<consumer group>.retry".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=240
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9._-]+$`
	// +optional
	TopicPrefix string `json:"topicPrefix,omitempty"`
}

// BackoffSpec is an exponential backoff: Initial, Initial*Multiplier, ..., capped at Max.
//
// +kubebuilder:validation:XValidation:rule="!has(self.initial) || !has(self.max) || !self.initial.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || !self.max.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || duration(self.initial) <= duration(self.max)",message="delivery.retry.backoff.initial must not exceed delivery.retry.backoff.max",fieldPath=".initial"
type BackoffSpec struct {
	// Initial delay before the first retry. Default: 1s, or max when that is
	// set shorter.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') && duration(self) > duration('0s')",message="must be a positive Go duration like 30s, 1m30s or 500ms"
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Initial *metav1.Duration `json:"initial,omitempty"`

	// Multiplier grows the delay from one retry to the next.
	// +kubebuilder:default=4
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	Multiplier *int32 `json:"multiplier,omitempty"`

	// Max caps the delay; it must be shorter than topics.retention (a retry
	// must not expire before it is due). Default: 10m (at least initial when
	// that is set), and at most topics.retention.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') && duration(self) > duration('0s')",message="must be a positive Go duration like 30s, 1m30s or 500ms"
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Max *metav1.Duration `json:"max,omitempty"`
}

// Ordering says which records of a worker may be at the sink at the same time.
// +kubebuilder:validation:Enum=Partition;Key;Unordered
type Ordering string

// Orderings.
const (
	// OrderingPartition: one sink call at a time per partition, in offset
	// order.
	OrderingPartition Ordering = "Partition"
	// OrderingKey: the records of one key in offset order, records of
	// different keys concurrently.
	OrderingKey Ordering = "Key"
	// OrderingUnordered: any record may overtake any other.
	OrderingUnordered Ordering = "Unordered"
)

// ProcessingSpec is the worker's concurrency: how many records may be at the
// sink at once, and which of them must wait for which.
//
// The ordering key is the Kafka record key, the key producers partition by
// (an account, an order id), whether or not spec.idempotencyKey is set: an
// idempotency key tells redeliveries apart and is usually unique per record
// (an event id), so ordering by it would order nothing. The records of a
// partition that have an empty key are ordered among themselves: they form
// one lane of their partition, as if they shared a key.
//
// docs/worker.md shows what may overtake what in each mode, and how order
// holds across retries and rebalances.
//
// +kubebuilder:validation:XValidation:rule="!has(self.maxInFlight) || (has(self.ordering) && self.ordering != 'Partition')",message="processing.maxInFlight applies to ordering Key or Unordered; ordering Partition has one record per partition at the sink",fieldPath=".maxInFlight"
type ProcessingSpec struct {
	// Ordering is one of:
	//   - Partition: one sink call at a time per partition, in offset order
	//     (the behaviour before this setting existed). A worker has as many
	//     records at the sink as it has partitions.
	//   - Key: the records of one key reach the sink strictly in offset order;
	//     records of different keys go concurrently, up to maxInFlight across
	//     all of the worker's partitions. Throughput no longer stops at the
	//     partition count when the sink is slow.
	//   - Unordered: any record may overtake any other, up to maxInFlight.
	// Key and Unordered need delivery.semantics AtLeastOnce. In every mode the
	// committed offset of a partition is the end of its contiguous finished
	// prefix, so a crash redelivers what was in flight, never skips it.
	// +kubebuilder:default=Partition
	// +optional
	Ordering Ordering `json:"ordering,omitempty"`

	// MaxInFlight bounds the records at the sink at once across all of the
	// worker's partitions, with ordering Key or Unordered (refused with
	// Partition). A poll must hold at least this many records
	// (consumer.maxPollRecords). Default: 64 with Key or Unordered.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4096
	// +optional
	MaxInFlight *int32 `json:"maxInFlight,omitempty"`
}

// ConsumerSpec holds the tuned poll settings. Kafka evicts a member that doesn't
// poll within MaxPollInterval or heartbeat within SessionTimeout; getting these
// right is what prevents rebalance storms.
//
// Rules compare only fields the user set: an unset one gets a default that
// fits the ones set (StreamPipeline.ConsumerTimings).
//
// +kubebuilder:validation:XValidation:rule="!has(self.heartbeatInterval) || !has(self.sessionTimeout) || !self.heartbeatInterval.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || !self.sessionTimeout.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || duration(self.heartbeatInterval).getMilliseconds() * 3 <= duration(self.sessionTimeout).getMilliseconds()",message="consumer.heartbeatInterval must be at most a third of consumer.sessionTimeout",fieldPath=".heartbeatInterval"
// +kubebuilder:validation:XValidation:rule="!has(self.sessionTimeout) || !has(self.maxPollInterval) || !self.sessionTimeout.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || !self.maxPollInterval.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || duration(self.sessionTimeout) < duration(self.maxPollInterval)",message="consumer.sessionTimeout must be less than consumer.maxPollInterval",fieldPath=".sessionTimeout"
// +kubebuilder:validation:XValidation:rule="!has(self.heartbeatInterval) || !has(self.maxPollInterval) || has(self.sessionTimeout) || !self.heartbeatInterval.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || !self.maxPollInterval.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || duration(self.heartbeatInterval).getMilliseconds() * 3 < duration(self.maxPollInterval).getMilliseconds()",message="consumer.heartbeatInterval must be less than a third of consumer.maxPollInterval: the session timeout, at least three heartbeats, must stay below it",fieldPath=".heartbeatInterval"
type ConsumerSpec struct {
	// Membership is Dynamic (the default: the workers run as a Deployment and
	// every restart is a leave and a join, so the group rebalances twice) or
	// Static (KIP-345: the workers run as a StatefulSet and each one joins
	// with its pod name, <pipeline>-worker-<n>, as its group.instance.id; a
	// restarted pod gets its own partitions back without a rebalance if it
	// rejoins within sessionTimeout, and the others keep theirs). A static
	// worker does not leave the group when it stops: its partitions wait for
	// it, up to sessionTimeout. The operator removes the members of pods a
	// scale-down or a switch to Dynamic took away. Consumer groups only.
	// +kubebuilder:validation:Enum=Dynamic;Static
	// +optional
	Membership Membership `json:"membership,omitempty"`

	// GroupProtocol is Classic (the default: the workers balance partitions
	// among themselves, cooperative-sticky, with a join/sync round per
	// change) or Consumer (KIP-848, Kafka 4.0+: the broker's coordinator
	// assigns partitions incrementally from heartbeats; a new worker gets
	// partitions in about one heartbeat, and the others keep consuming
	// meanwhile). With Consumer the session timeout and heartbeat interval are
	// the group's, not the member's: the operator sets
	// consumer.session.timeout.ms and consumer.heartbeat.interval.ms on the
	// group from sessionTimeout and heartbeatInterval. Not with membership
	// Static (Kafka holds a stopped static member's instance ID for its
	// session timeout, so a restarted pod can't rejoin until then) nor with
	// source.groupType Share.
	// +kubebuilder:validation:Enum=Classic;Consumer
	// +optional
	GroupProtocol GroupProtocol `json:"groupProtocol,omitempty"`

	// MaxPollRecords is the most records one poll hands to the worker. With
	// processing.ordering Key or Unordered it must be at least
	// processing.maxInFlight. Default: 100 with ordering Partition; with Key or
	// Unordered 4 × processing.maxInFlight and at least 100, so that a poll
	// holds enough records of different keys to keep maxInFlight busy.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	// +optional
	MaxPollRecords *int32 `json:"maxPollRecords,omitempty"`

	// MaxPollInterval is the longest the worker may take to handle one poll's
	// records before the group considers it dead (the rebalance timeout).
	// Default: 10m, or more when sessionTimeout or delivery.processingTimeout
	// is set longer (twice the session timeout; the processing timeout).
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') && duration(self) > duration('0s')",message="must be a positive Go duration like 30s, 1m30s or 500ms"
	// +kubebuilder:validation:MaxLength=64
	// +optional
	MaxPollInterval *metav1.Duration `json:"maxPollInterval,omitempty"`

	// SessionTimeout is how long the group waits for a heartbeat. Default:
	// 45s, or half of maxPollInterval when that is set shorter than 90s, and
	// at least three heartbeat intervals.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') && duration(self) > duration('0s')",message="must be a positive Go duration like 30s, 1m30s or 500ms"
	// +kubebuilder:validation:MaxLength=64
	// +optional
	SessionTimeout *metav1.Duration `json:"sessionTimeout,omitempty"`

	// HeartbeatInterval is how often the worker heartbeats; a new replica
	// gets partitions at the others' next heartbeat. Default: 3s (Kafka's
	// own), or a third of sessionTimeout when that is shorter than 9s.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') && duration(self) > duration('0s')",message="must be a positive Go duration like 30s, 1m30s or 500ms"
	// +kubebuilder:validation:MaxLength=64
	// +optional
	HeartbeatInterval *metav1.Duration `json:"heartbeatInterval,omitempty"`

	// FetchMaxWait is how long a fetch waits for data before returning empty.
	// +kubebuilder:default="500ms"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') && duration(self) > duration('0s')",message="must be a positive Go duration like 30s, 1m30s or 500ms"
	// +kubebuilder:validation:MaxLength=64
	// +optional
	FetchMaxWait *metav1.Duration `json:"fetchMaxWait,omitempty"`

	// FetchMaxBytes bounds one fetch from one broker (fetch.max.bytes). It is
	// the worker's read-ahead, and so most of its memory under a backlog:
	// compressed batches decode to several times their size. A batch larger
	// than the bound is still fetched whole, so large records never stall.
	// +kubebuilder:default=1048576
	// +kubebuilder:validation:Minimum=1024
	// +kubebuilder:validation:Maximum=268435456
	// +optional
	FetchMaxBytes *int32 `json:"fetchMaxBytes,omitempty"`

	// MaxPartitionFetchBytes bounds what one fetch returns for one partition
	// (max.partition.fetch.bytes).
	// +kubebuilder:default=262144
	// +kubebuilder:validation:Minimum=1024
	// +kubebuilder:validation:Maximum=268435456
	// +optional
	MaxPartitionFetchBytes *int32 `json:"maxPartitionFetchBytes,omitempty"`
}

// CircuitBreakerSpec configures the breaker around the sink.
type CircuitBreakerSpec struct {
	// FailureThreshold is the number of consecutive transient failures that opens
	// the circuit.
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	// +optional
	FailureThreshold *int32 `json:"failureThreshold,omitempty"`

	// OpenDuration is how long the circuit stays open before a trial request.
	// +kubebuilder:default="60s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') && duration(self) > duration('0s')",message="must be a positive Go duration like 30s, 1m30s or 500ms"
	// +kubebuilder:validation:MaxLength=64
	// +optional
	OpenDuration *metav1.Duration `json:"openDuration,omitempty"`
}

// RateLimitSpec is a token bucket per worker, with a warm-up ramp after start.
//
// +kubebuilder:validation:XValidation:rule="!has(self.recordsPerSecond) || !has(self.warmup.recordsPerSecond) || self.warmup.recordsPerSecond <= self.recordsPerSecond",message="rateLimit.warmup.recordsPerSecond must not exceed rateLimit.recordsPerSecond",fieldPath=".warmup.recordsPerSecond"
type RateLimitSpec struct {
	// RecordsPerSecond is the steady-state limit per worker. Unset: no limit once
	// warmed up.
	// +kubebuilder:validation:Minimum=1
	// +optional
	RecordsPerSecond *int32 `json:"recordsPerSecond,omitempty"`

	// Warmup ramps the rate up from Warmup.RecordsPerSecond over Warmup.Duration.
	// +kubebuilder:default={}
	// +optional
	Warmup WarmupSpec `json:"warmup,omitzero"`
}

// WarmupSpec is the start of the rate ramp.
type WarmupSpec struct {
	// RecordsPerSecond at start. Default: 100, or rateLimit.recordsPerSecond
	// when that is lower.
	// +kubebuilder:validation:Minimum=1
	// +optional
	RecordsPerSecond *int32 `json:"recordsPerSecond,omitempty"`

	// Duration of the ramp. "0s" disables the warm-up.
	// +kubebuilder:default="2m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$')",message="must be a Go duration like 30s, 5m or 0s"
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Duration *metav1.Duration `json:"duration,omitempty"`
}

// StartupSpec staggers the start of the workers.
type StartupSpec struct {
	// MaxJitter is the upper bound of the random delay before a worker joins the
	// consumer group. "0s" disables it. Static members
	// (consumer.membership Static) join at once: a restarted one rejoins
	// without a rebalance, and its partitions wait for it meanwhile.
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$')",message="must be a Go duration like 30s, 5m or 0s"
	// +kubebuilder:validation:MaxLength=64
	// +optional
	MaxJitter *metav1.Duration `json:"maxJitter,omitempty"`
}

// ScalingSpec bounds the replicas and sets the lag-based scaling policy.
type ScalingSpec struct {
	// MinReplicas; 0 lets an idle pipeline scale to zero.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	// +optional
	MinReplicas *int32 `json:"minReplicas,omitempty"`

	// MaxReplicas; the effective cap is also the source's partition count.
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +optional
	MaxReplicas *int32 `json:"maxReplicas,omitempty"`

	// LagThreshold is the target lag (records) per replica.
	// +kubebuilder:default=1000
	// +kubebuilder:validation:Minimum=1
	// +optional
	LagThreshold *int64 `json:"lagThreshold,omitempty"`

	// MaxScaleUpStep bounds how many replicas one scale-up adds.
	// +kubebuilder:default=4
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +optional
	MaxScaleUpStep *int32 `json:"maxScaleUpStep,omitempty"`

	// PollInterval is how often lag is sampled.
	// +kubebuilder:default="2s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') && duration(self) >= duration('100ms')",message="must be a Go duration of at least 100ms, like 2s"
	// +kubebuilder:validation:MaxLength=64
	// +optional
	PollInterval *metav1.Duration `json:"pollInterval,omitempty"`

	// ScaleDownStabilization is how long lag must justify fewer replicas before
	// the pipeline scales down.
	// +kubebuilder:default="5m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$')",message="must be a Go duration like 30s, 5m or 0s"
	// +kubebuilder:validation:MaxLength=64
	// +optional
	ScaleDownStabilization *metav1.Duration `json:"scaleDownStabilization,omitempty"`

	// LagCriticalSeconds: lag larger than this many seconds of ingest sets the
	// LagCritical condition.
	// +kubebuilder:default=300
	// +kubebuilder:validation:Minimum=1
	// +optional
	LagCriticalSeconds *int32 `json:"lagCriticalSeconds,omitempty"`
}

// DeletionPolicy says what happens to provisioned topics when the pipeline goes.
// +kubebuilder:validation:Enum=Retain;Delete
type DeletionPolicy string

// Deletion policies.
const (
	DeletionPolicyRetain DeletionPolicy = "Retain"
	DeletionPolicyDelete DeletionPolicy = "Delete"
)

// TopicPolicy is the configuration of the retry and dead-letter topics.
//
// +kubebuilder:validation:XValidation:rule="!has(self.minInSyncReplicas) || !has(self.replicationFactor) || self.minInSyncReplicas <= self.replicationFactor",message="topics.minInSyncReplicas must be less than or equal to topics.replicationFactor",fieldPath=".minInSyncReplicas"
type TopicPolicy struct {
	// Partitions of each provisioned topic. Default: the source topic's count.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	// +optional
	Partitions *int32 `json:"partitions,omitempty"`

	// ReplicationFactor of each provisioned topic.
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=32
	// +optional
	ReplicationFactor *int32 `json:"replicationFactor,omitempty"`

	// MinInSyncReplicas (min.insync.replicas) of each provisioned topic.
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=32
	// +optional
	MinInSyncReplicas *int32 `json:"minInSyncReplicas,omitempty"`

	// Retention (retention.ms) of each provisioned topic.
	// +kubebuilder:default="168h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') && duration(self) > duration('0s')",message="must be a positive Go duration like 30s, 1m30s or 500ms"
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Retention *metav1.Duration `json:"retention,omitempty"`

	// DeletionPolicy: Retain (default) keeps the retry and dead-letter topics when
	// the pipeline is deleted; Delete removes them.
	// +kubebuilder:default=Retain
	// +optional
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`
}

// PodTemplateOverrides are the parts of the worker pods a team may set.
type PodTemplateOverrides struct {
	// Labels added to the pods.
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(k) <= 317 && k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'))",message="label keys must be an optional DNS-subdomain prefix and '/', then 1-63 characters of [A-Za-z0-9_.-] that begin and end with a letter or digit, e.g. team or example.com/team"
	// +optional
	Labels map[string]LabelValue `json:"labels,omitempty"`

	// Annotations added to the pods.
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(k) <= 317 && k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'))",message="annotation keys must be an optional DNS-subdomain prefix and '/', then 1-63 characters of [A-Za-z0-9_.-] that begin and end with a letter or digit, e.g. example.com/owner"
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`

	// Resources of the worker container. Default: requests 100m CPU, 128Mi
	// memory; limit 256Mi memory.
	// +kubebuilder:validation:XValidation:rule="!has(self.requests) || !has(self.limits) || ['cpu', 'memory', 'ephemeral-storage'].all(r, !(r in self.requests) || !(r in self.limits) || !quantity(string(self.requests[r])).isGreaterThan(quantity(string(self.limits[r]))))",message="resources.requests of cpu, memory or ephemeral-storage must not exceed its resources.limits"
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`

	// Env is appended to the worker container's environment.
	// +kubebuilder:validation:MaxItems=128
	// +optional
	// +listType=map
	// +listMapKey=name
	Env []EnvVar `json:"env,omitempty"`

	// NodeSelector of the pods.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// Tolerations of the pods.
	// +optional
	// +listType=atomic
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`

	// Affinity of the pods. Default: spread across nodes where possible.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`

	// PriorityClassName of the pods.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	PriorityClassName string `json:"priorityClassName,omitempty"`

	// ImagePullSecrets of the pods.
	// +optional
	// +listType=atomic
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`

	// ImagePullPolicy of the worker container.
	// +kubebuilder:validation:Enum=Always;IfNotPresent;Never
	// +optional
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`
}

// LabelValue is a Kubernetes label value.
// +kubebuilder:validation:MaxLength=63
// +kubebuilder:validation:XValidation:rule="self.matches('^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$')",message="label values must be at most 63 characters of [A-Za-z0-9_.-] that begin and end with a letter or digit (or be empty)"
type LabelValue string

// EnvVar is one environment variable of the worker container (core/v1
// EnvVar's fields, with the name checked at admission as Kubernetes checks it).
type EnvVar struct {
	// Name of the variable.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="self.matches('^[ -<>-~]+$')",message="environment variable names must be printable ASCII characters other than '='"
	// +required
	Name string `json:"name"`

	// Value of the variable.
	// +optional
	Value string `json:"value,omitempty"`

	// ValueFrom takes the value from a ConfigMap, a Secret or the pod.
	// +optional
	ValueFrom *corev1.EnvVarSource `json:"valueFrom,omitempty"`
}

// StreamPipelineStatus is what Sluice observed.
type StreamPipelineStatus struct {
	// ObservedGeneration is the generation of the spec the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready, Reconciling, Stalled (kstatus), plus TopicsReady,
	// LagCritical and DeadLettersPresent.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// ConsumerGroup is the effective consumer group.
	// +optional
	ConsumerGroup string `json:"consumerGroup,omitempty"`

	// Replicas is the number of worker pods.
	// +optional
	Replicas int32 `json:"replicas"`

	// ReadyReplicas is the number of ready worker pods.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas"`

	// DesiredReplicas is what the operator asks of the Deployment.
	// +optional
	DesiredReplicas int32 `json:"desiredReplicas"`

	// Partitions of the source topic, once measured.
	// +optional
	Partitions *int32 `json:"partitions,omitempty"`

	// Lag of the consumer group, once measured.
	// +optional
	Lag *LagStatus `json:"lag,omitempty"`

	// Rates of ingest and processing, once measured.
	// +optional
	Rates *RateStatus `json:"rates,omitempty"`

	// DeadLetter is the dead-letter topic and its depth.
	// +optional
	DeadLetter *DeadLetterStatus `json:"deadLetter,omitempty"`

	// LastScale is the operator's most recent change of the worker count.
	// +optional
	LastScale *ScaleStatus `json:"lastScale,omitempty"`

	// StartingOffsetsCommitted is when the operator fixed where the consumer
	// group starts: for startFrom Latest, it commits the end of every partition
	// for a group that has no committed offset and no members, before the first
	// worker starts. From then on every record that arrives counts as lag and is
	// consumed, also while the pipeline runs no workers, and a partition without
	// a committed offset (one added to the topic later) is read from its
	// beginning. Unset for startFrom Earliest.
	// +optional
	StartingOffsetsCommitted *metav1.Time `json:"startingOffsetsCommitted,omitempty"`

	// WorkerConfigHash identifies the rendered worker configuration; it changes
	// (and rolls the pods) when the configuration does.
	// +optional
	WorkerConfigHash string `json:"workerConfigHash,omitempty"`
}

// LagStatus is the consumer group's lag.
type LagStatus struct {
	// Total lag in records over all partitions.
	Total int64 `json:"total"`

	// MaxPartition is the largest lag of a single partition.
	MaxPartition int64 `json:"maxPartition"`

	// PartitionsWithLag is how many source partitions have lag.
	PartitionsWithLag int32 `json:"partitionsWithLag"`

	// Seconds is how far behind the group is in time: the age of the oldest
	// record it has not consumed. Unset when there is no lag or it can't be read.
	// +optional
	Seconds *int64 `json:"seconds,omitempty"`

	// MeasuredAt is when the lag was sampled.
	MeasuredAt metav1.Time `json:"measuredAt"`

	// EstimatedDrainSeconds is how long the current processing rate needs to
	// catch up; unset when the pipeline is not catching up.
	// +optional
	EstimatedDrainSeconds *int64 `json:"estimatedDrainSeconds,omitempty"`
}

// ScaleStatus describes one scaling decision.
type ScaleStatus struct {
	// Time of the change.
	Time metav1.Time `json:"time"`
	// From and To are the worker counts before and after.
	From int32 `json:"from"`
	To   int32 `json:"to"`
	// Reason is a CamelCase reason, e.g. LagAboveTarget.
	Reason string `json:"reason"`
	// Message explains the decision with its numbers.
	Message string `json:"message"`
}

// RateStatus holds rates in records per second.
type RateStatus struct {
	// IngestPerSecond is the rate records arrive at the source.
	IngestPerSecond int64 `json:"ingestPerSecond"`

	// ProcessPerSecond is the rate the group commits at.
	ProcessPerSecond int64 `json:"processPerSecond"`
}

// DeadLetterStatus describes the dead-letter topic.
type DeadLetterStatus struct {
	// Topic is the effective dead-letter topic.
	Topic string `json:"topic"`

	// Records in the dead-letter topic, once measured.
	// +optional
	Records *int64 `json:"records,omitempty"`
}

// StreamPipeline is a Kafka consumer workload that Sluice runs for a team: a
// Deployment of workers that consume a topic, deliver to one sink, and park what
// fails in retry and dead-letter topics.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 52",message="metadata.name must be at most 52 characters: it names the worker Deployment and labels its pods"
// +kubebuilder:resource:shortName=sp,categories=sluice
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Replicas",type=integer,JSONPath=`.status.replicas`
// +kubebuilder:printcolumn:name="GroupType",type=string,JSONPath=`.spec.source.groupType`
// +kubebuilder:printcolumn:name="Lag",type=integer,JSONPath=`.status.lag.total`
// +kubebuilder:printcolumn:name="DLQ",type=integer,JSONPath=`.status.deadLetter.records`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Topic",type=string,JSONPath=`.spec.source.topic`,priority=1
// +kubebuilder:printcolumn:name="Group",type=string,JSONPath=`.status.consumerGroup`,priority=1
// +kubebuilder:printcolumn:name="Rate",type=integer,JSONPath=`.status.rates.processPerSecond`,priority=1
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1
type StreamPipeline struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec StreamPipelineSpec `json:"spec"`

	// +optional
	Status StreamPipelineStatus `json:"status,omitzero"`
}

// StreamPipelineList is a list of StreamPipelines.
//
// +kubebuilder:object:root=true
type StreamPipelineList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []StreamPipeline `json:"items"`
}
