// Package workerconfig is the contract between the operator and the worker: the
// operator renders a Config from a StreamPipeline into a ConfigMap, the worker
// reads it from the mounted file (or from any file, when run standalone).
//
// Credentials never appear here: the config names files (mounted Secrets) that
// hold them.
package workerconfig

import (
	"errors"
	"fmt"
	"os"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// FileName is the key of the rendered config in the ConfigMap and the file name
// in the worker pod.
const FileName = "worker.yaml"

// MemoryLimitEnv carries the worker container's memory limit in bytes: the
// operator sets it from the Downward API (limits.memory) and the worker gives
// 90% of it to the Go heap as a soft limit (GOMEMLIMIT, when set, wins).
const MemoryLimitEnv = "SLUICE_MEMORY_LIMIT"

// Fetch sizes when the config leaves them out (and the API's defaults):
// enough read-ahead to keep the sink busy, small enough to keep a worker's
// memory flat under any backlog (see BENCHMARKS.md).
const (
	DefaultFetchMaxBytes          int32 = 1 << 20
	DefaultMaxPartitionFetchBytes int32 = 256 << 10
)

// PodNameEnv and PodNamespaceEnv carry the worker pod's name and namespace
// (the Downward API): the pod name is its client ID, its static instance ID
// and part of its transactional ID.
const (
	PodNameEnv      = "POD_NAME"
	PodNamespaceEnv = "POD_NAMESPACE"
)

// Config is the worker's whole configuration.
type Config struct {
	// Pipeline identifies the StreamPipeline (labels on metrics and logs).
	Pipeline PipelineRef `json:"pipeline"`
	// Kafka is the connection to the cluster of the source, retry and DLQ topics.
	Kafka Kafka `json:"kafka"`
	// Source is the topic and group.
	Source Source `json:"source"`
	// Sink is where records go; exactly one field is set.
	Sink Sink `json:"sink"`
	// IdempotencyKey derives the key; nil means "<topic>/<partition>/<offset>".
	IdempotencyKey *IdempotencyKey `json:"idempotencyKey,omitempty"`
	// Delivery holds semantics, retry topics and the dead-letter topic.
	Delivery Delivery `json:"delivery"`
	// Processing says which records may be in flight at once.
	Processing Processing `json:"processing,omitzero"`
	// Consumer holds the poll settings.
	Consumer Consumer `json:"consumer"`
	// CircuitBreaker guards the sink.
	CircuitBreaker CircuitBreaker `json:"circuitBreaker"`
	// RateLimit is the token bucket with warm-up.
	RateLimit RateLimit `json:"rateLimit"`
	// Startup holds the join jitter.
	Startup Startup `json:"startup"`
	// Server is the health and metrics endpoint.
	Server Server `json:"server"`
}

// PipelineRef names the pipeline a worker runs for.
type PipelineRef struct {
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// Kafka is the client connection.
type Kafka struct {
	BootstrapServers []string `json:"bootstrapServers"`
	TLS              *TLS     `json:"tls,omitempty"`
	SASL             *SASL    `json:"sasl,omitempty"`
}

// TLS lists the mounted files of the TLS material. Empty fields mean "system trust
// store" and "no client certificate".
type TLS struct {
	CAFile   string `json:"caFile,omitempty"`
	CertFile string `json:"certFile,omitempty"`
	KeyFile  string `json:"keyFile,omitempty"`
}

// SASL names the mechanism and the mounted credential files.
type SASL struct {
	Mechanism    string `json:"mechanism"`
	UsernameFile string `json:"usernameFile"`
	PasswordFile string `json:"passwordFile"`
}

// Source is what to consume.
type Source struct {
	Topic         string `json:"topic"`
	ConsumerGroup string `json:"consumerGroup"`
	// StartFrom is StartFromEarliest or StartFromLatest.
	StartFrom string `json:"startFrom"`
	// GroupType is Consumer (empty means this) or Share: the worker joins
	// ConsumerGroup as a Kafka share group member and acknowledges each record.
	GroupType string `json:"groupType,omitempty"`
	// Share holds what a share group member needs to know (GroupType Share).
	Share *Share `json:"share,omitempty"`
}

// Where a group without a committed offset starts (Source.StartFrom).
const (
	StartFromEarliest = "Earliest"
	StartFromLatest   = "Latest"
)

// Delivery guarantees (Delivery.Semantics).
const (
	AtLeastOnce = "AtLeastOnce"
	ExactlyOnce = "ExactlyOnce"
)

// Log sink formats (LogSink.Format).
const (
	LogFormatJSON = "JSON"
	LogFormatText = "Text"
)

// Group types.
const (
	GroupTypeConsumer = "Consumer"
	GroupTypeShare    = "Share"
)

// Share is a share group member's failure budget. The operator sets the same
// DeliveryCountLimit on the group (share.delivery.count.limit).
type Share struct {
	// RetryAttempts is how many more deliveries a record that failed
	// transiently gets before it goes to the dead-letter topic.
	RetryAttempts int32 `json:"retryAttempts"`
	// DeliveryCountLimit is the broker's limit: a record delivered that many
	// times is archived when it is released again, so the worker
	// dead-letters it at that delivery whatever RetryAttempts says.
	DeliveryCountLimit int32 `json:"deliveryCountLimit"`
	// RecordLockDuration is the group's share.record.lock.duration.ms: a
	// record not acknowledged within it goes to another member unless the
	// worker renews its lock.
	RecordLockDuration metav1.Duration `json:"recordLockDuration"`
}

// IsShare says whether the worker is a share group member.
func (s Source) IsShare() bool { return s.GroupType == GroupTypeShare }

// Sink has exactly one field set.
type Sink struct {
	HTTP     *HTTPSink     `json:"http,omitempty"`
	Postgres *PostgresSink `json:"postgres,omitempty"`
	Kafka    *KafkaSink    `json:"kafka,omitempty"`
	Log      *LogSink      `json:"log,omitempty"`
}

// HTTPSink POSTs records.
type HTTPSink struct {
	URL     string          `json:"url"`
	Timeout metav1.Duration `json:"timeout"`
	// BearerTokenFile holds a token sent as "Authorization: Bearer <token>".
	BearerTokenFile string `json:"bearerTokenFile,omitempty"`
	// BasicAuth names the files of HTTP basic credentials.
	BasicAuth *BasicAuthFiles `json:"basicAuth,omitempty"`
	// Headers are sent with every request, each value read from a file.
	Headers []HeaderFile `json:"headers,omitempty"`
	// Health says how readiness checks the service.
	Health HTTPHealth `json:"health,omitempty"`
}

// BasicAuthFiles name the mounted username and password files.
type BasicAuthFiles struct {
	UsernameFile string `json:"usernameFile"`
	PasswordFile string `json:"passwordFile"`
}

// HeaderFile is a request header whose value is in a mounted file.
type HeaderFile struct {
	Name string `json:"name"`
	File string `json:"file"`
}

// HTTPHealth is the HTTP sink's readiness check. An empty URL checks the
// sink URL (reachable unless it answers 502, 503 or 504); a URL of its own is
// healthy on 2xx and 3xx.
type HTTPHealth struct {
	URL      string `json:"url,omitempty"`
	Method   string `json:"method,omitempty"` // HEAD (default), GET or OPTIONS
	Disabled bool   `json:"disabled,omitempty"`
}

// PostgresSink inserts records; the DSN is read from a mounted file.
type PostgresSink struct {
	DSNFile       string `json:"dsnFile"`
	Table         string `json:"table"`
	KeyColumn     string `json:"keyColumn"`
	PayloadColumn string `json:"payloadColumn"`
}

// KafkaSink produces records to a topic.
type KafkaSink struct {
	Topic string `json:"topic"`
}

// LogSink prints records.
type LogSink struct {
	// Format is LogFormatJSON or LogFormatText.
	Format string `json:"format"`
}

// IdempotencyKey derives the idempotency key from a header or a JSON field.
type IdempotencyKey struct {
	Header    string `json:"header,omitempty"`
	JSONField string `json:"jsonField,omitempty"`
}

// Delivery is the delivery guarantee and the failure path.
type Delivery struct {
	// Semantics is AtLeastOnce or ExactlyOnce.
	Semantics string `json:"semantics"`
	// RetryTopics are visited in order by a record that keeps failing transiently.
	RetryTopics       []string        `json:"retryTopics,omitempty"`
	Backoff           Backoff         `json:"backoff"`
	DeadLetterTopic   string          `json:"deadLetterTopic"`
	ProcessingTimeout metav1.Duration `json:"processingTimeout"`
}

// Backoff is the delay before retry n: min(Initial * Multiplier^(n-1), Max).
type Backoff struct {
	Initial    metav1.Duration `json:"initial"`
	Multiplier int32           `json:"multiplier"`
	Max        metav1.Duration `json:"max"`
}

// The orderings a worker can keep (spec.processing.ordering).
const (
	// OrderingPartition hands a partition's records to the sink one call at a
	// time, in offset order (the default; an empty Ordering means this).
	OrderingPartition = "Partition"
	// OrderingKey keeps each key's records in offset order and lets records of
	// different keys be in flight at once, up to MaxInFlight.
	OrderingKey = "Key"
	// OrderingUnordered lets any record overtake any other, up to MaxInFlight.
	OrderingUnordered = "Unordered"
)

// MaxMaxInFlight bounds Processing.MaxInFlight (the API's bound too).
const MaxMaxInFlight = 4096

// Processing is the worker's concurrency: how many records may be at the sink
// at once and which of them must wait for which.
type Processing struct {
	// Ordering is Partition, Key or Unordered; empty means Partition.
	Ordering string `json:"ordering,omitempty"`
	// MaxInFlight bounds the records at the sink at once across all of the
	// worker's partitions (Key and Unordered; Partition ignores it).
	MaxInFlight int32 `json:"maxInFlight,omitempty"`
}

// Concurrent says whether records of one partition may be in flight at once.
func (p Processing) Concurrent() bool {
	return p.Ordering == OrderingKey || p.Ordering == OrderingUnordered
}

// Consumer holds the poll settings.
type Consumer struct {
	MaxPollRecords    int32           `json:"maxPollRecords"`
	MaxPollInterval   metav1.Duration `json:"maxPollInterval"`
	SessionTimeout    metav1.Duration `json:"sessionTimeout"`
	HeartbeatInterval metav1.Duration `json:"heartbeatInterval"`
	FetchMaxWait      metav1.Duration `json:"fetchMaxWait"`
	// FetchMaxBytes and MaxPartitionFetchBytes bound a fetch per broker and
	// per partition; 0 means the worker's defaults (1 MiB, 256 KiB).
	FetchMaxBytes          int32 `json:"fetchMaxBytes,omitempty"`
	MaxPartitionFetchBytes int32 `json:"maxPartitionFetchBytes,omitempty"`
	// ShutdownTimeout bounds the graceful drain on SIGTERM; the pod's grace
	// period is a little longer.
	ShutdownTimeout metav1.Duration `json:"shutdownTimeout"`
	// StaticMembership makes the worker a static member of its group: its
	// group.instance.id is its pod name (POD_NAME), and it does not leave
	// the group when it stops.
	StaticMembership bool `json:"staticMembership,omitempty"`
	// GroupProtocol is GroupProtocolConsumer for a KIP-848 group (the broker
	// assigns partitions; its session timeout and heartbeat interval are the
	// group's configs, which the operator sets); empty for the classic one.
	GroupProtocol string `json:"groupProtocol,omitempty"`
}

// GroupProtocolConsumer is Consumer.GroupProtocol for a KIP-848 group.
const GroupProtocolConsumer = "Consumer"

// CircuitBreaker guards the sink.
type CircuitBreaker struct {
	FailureThreshold int32           `json:"failureThreshold"`
	OpenDuration     metav1.Duration `json:"openDuration"`
}

// RateLimit is a token bucket; RecordsPerSecond 0 means unlimited after warm-up.
type RateLimit struct {
	RecordsPerSecond       int32           `json:"recordsPerSecond,omitempty"`
	WarmupRecordsPerSecond int32           `json:"warmupRecordsPerSecond"`
	WarmupDuration         metav1.Duration `json:"warmupDuration"`
}

// Startup holds the random delay before joining the group.
type Startup struct {
	MaxJitter metav1.Duration `json:"maxJitter"`
}

// Server is the HTTP endpoint for /healthz, /readyz and /metrics.
type Server struct {
	Port int32 `json:"port"`
}

// Marshal renders the config as YAML.
func (c *Config) Marshal() ([]byte, error) {
	return yaml.Marshal(c)
}

// Parse reads a YAML (or JSON) config strictly: unknown fields are errors, so a
// typo in a hand-written config is caught instead of silently ignored. The result
// is validated.
func Parse(data []byte) (*Config, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("parse worker config: %w", err)
	}
	var c Config
	// sigs.k8s.io/json reports unknown and duplicate fields with their full path
	// ("consumer.maxPolRecords"), as the API server does.
	strictErrs, err := kjson.UnmarshalStrict(js, &c)
	if err != nil {
		return nil, fmt.Errorf("parse worker config: %w", err)
	}
	if len(strictErrs) > 0 {
		return nil, fmt.Errorf("parse worker config: %w", errors.Join(strictErrs...))
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Load reads and validates the config file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read worker config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}
