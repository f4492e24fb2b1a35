package workerconfig

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

var topicName = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

// Validate checks the config and returns every problem at once, each naming the
// field ("consumer.heartbeatInterval: Invalid value: ...").
func (c *Config) Validate() error {
	var errs field.ErrorList
	errs = append(errs, validatePipeline(c.Pipeline, field.NewPath("pipeline"))...)
	errs = append(errs, validateKafka(c.Kafka, field.NewPath("kafka"))...)
	errs = append(errs, validateSource(c.Source, field.NewPath("source"))...)
	errs = append(errs, validateSink(c.Sink, c.Delivery.Semantics, field.NewPath("sink"))...)
	errs = append(errs, validateDelivery(c, field.NewPath("delivery"))...)
	errs = append(errs, validateConsumer(c.Consumer, field.NewPath("consumer"))...)
	errs = append(errs, validateProcessing(c, field.NewPath("processing"))...)
	errs = append(errs, validateShareCombination(c)...)
	errs = append(errs, validateBreaker(c.CircuitBreaker, field.NewPath("circuitBreaker"))...)
	errs = append(errs, validateRateLimit(c.RateLimit, field.NewPath("rateLimit"))...)
	if c.Startup.MaxJitter.Duration < 0 {
		errs = append(errs, field.Invalid(field.NewPath("startup", "maxJitter"), c.Startup.MaxJitter.String(), "must not be negative"))
	}
	if c.Server.Port < 1 || c.Server.Port > 65535 {
		errs = append(errs, field.Invalid(field.NewPath("server", "port"), c.Server.Port, "must be a TCP port (1-65535)"))
	}
	if c.IdempotencyKey != nil && (c.IdempotencyKey.Header == "") == (c.IdempotencyKey.JSONField == "") {
		errs = append(errs, field.Invalid(field.NewPath("idempotencyKey"), *c.IdempotencyKey, "set exactly one of header or jsonField"))
	}
	return errs.ToAggregate()
}

func validatePipeline(p PipelineRef, path *field.Path) field.ErrorList {
	if p.Name == "" {
		return field.ErrorList{field.Required(path.Child("name"), "names the pipeline in metrics and logs")}
	}
	return nil
}

func validateKafka(k Kafka, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(k.BootstrapServers) == 0 {
		errs = append(errs, field.Required(path.Child("bootstrapServers"), "at least one host:port"))
	}
	for i, s := range k.BootstrapServers {
		if !validHostPort(s) {
			errs = append(errs, field.Invalid(path.Child("bootstrapServers").Index(i), s, "must be host:port with a port 1-65535"))
		}
	}
	if k.TLS != nil && (k.TLS.CertFile == "") != (k.TLS.KeyFile == "") {
		errs = append(errs, field.Invalid(path.Child("tls"), "", "certFile and keyFile go together"))
	}
	if k.SASL != nil {
		switch k.SASL.Mechanism {
		case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		default:
			errs = append(errs, field.NotSupported(path.Child("sasl", "mechanism"), k.SASL.Mechanism, []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}))
		}
		if k.SASL.UsernameFile == "" {
			errs = append(errs, field.Required(path.Child("sasl", "usernameFile"), ""))
		}
		if k.SASL.PasswordFile == "" {
			errs = append(errs, field.Required(path.Child("sasl", "passwordFile"), ""))
		}
	}
	return errs
}

func validateTopic(path *field.Path, topic string) field.ErrorList {
	if topic == "" {
		return field.ErrorList{field.Required(path, "")}
	}
	if !topicName.MatchString(topic) || topic == "." || topic == ".." {
		return field.ErrorList{field.Invalid(path, topic, "a Kafka topic name has 1-249 characters of [a-zA-Z0-9._-] and is not '.' or '..'")}
	}
	return nil
}

func validateSource(s Source, path *field.Path) field.ErrorList {
	errs := validateTopic(path.Child("topic"), s.Topic)
	if s.ConsumerGroup == "" {
		errs = append(errs, field.Required(path.Child("consumerGroup"), ""))
	}
	if s.StartFrom != StartFromEarliest && s.StartFrom != StartFromLatest {
		errs = append(errs, field.NotSupported(path.Child("startFrom"), s.StartFrom, []string{StartFromEarliest, StartFromLatest}))
	}
	switch s.GroupType {
	case "", GroupTypeConsumer:
		if s.Share != nil {
			errs = append(errs, field.Forbidden(path.Child("share"), "only with groupType Share"))
		}
	case GroupTypeShare:
		errs = append(errs, validateShare(s.Share, path.Child("share"))...)
	default:
		errs = append(errs, field.NotSupported(path.Child("groupType"), s.GroupType, []string{GroupTypeConsumer, GroupTypeShare}))
	}
	return errs
}

func validateShare(s *Share, path *field.Path) field.ErrorList {
	if s == nil {
		return field.ErrorList{field.Required(path, "groupType Share needs its delivery count limit and lock duration")}
	}
	var errs field.ErrorList
	if s.RetryAttempts < 0 {
		errs = append(errs, field.Invalid(path.Child("retryAttempts"), s.RetryAttempts, "must not be negative"))
	}
	if s.DeliveryCountLimit < 2 {
		errs = append(errs, field.Invalid(path.Child("deliveryCountLimit"), s.DeliveryCountLimit, "must be at least 2 (Kafka's minimum)"))
	}
	if s.RecordLockDuration.Duration <= 0 {
		errs = append(errs, field.Invalid(path.Child("recordLockDuration"), s.RecordLockDuration.String(), "must be positive"))
	}
	return errs
}

func validateSink(s Sink, semantics string, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	set := 0
	if s.HTTP != nil {
		set++
		if s.HTTP.URL == "" {
			errs = append(errs, field.Required(path.Child("http", "url"), ""))
		}
		if s.HTTP.Timeout.Duration <= 0 {
			errs = append(errs, field.Invalid(path.Child("http", "timeout"), s.HTTP.Timeout.String(), "must be positive"))
		}
		errs = append(errs, validateHTTP(s.HTTP, path.Child("http"))...)
	}
	if s.Postgres != nil {
		set++
		for name, v := range map[string]string{"dsnFile": s.Postgres.DSNFile, "table": s.Postgres.Table, "keyColumn": s.Postgres.KeyColumn, "payloadColumn": s.Postgres.PayloadColumn} {
			if v == "" {
				errs = append(errs, field.Required(path.Child("postgres", name), ""))
			}
		}
		if s.Postgres.KeyColumn != "" && s.Postgres.KeyColumn == s.Postgres.PayloadColumn {
			errs = append(errs, field.Invalid(path.Child("postgres", "payloadColumn"), s.Postgres.PayloadColumn, "must differ from keyColumn"))
		}
	}
	if s.Kafka != nil {
		set++
		errs = append(errs, validateTopic(path.Child("kafka", "topic"), s.Kafka.Topic)...)
	}
	if s.Log != nil {
		set++
		if s.Log.Format != LogFormatJSON && s.Log.Format != LogFormatText {
			errs = append(errs, field.NotSupported(path.Child("log", "format"), s.Log.Format, []string{LogFormatJSON, LogFormatText}))
		}
	}
	if set != 1 {
		errs = append(errs, field.Invalid(path, fmt.Sprintf("%d sinks set", set), "exactly one of http, postgres, kafka or log must be set"))
	}
	if semantics == ExactlyOnce && s.Kafka == nil && s.Postgres == nil {
		errs = append(errs, field.Invalid(field.NewPath("delivery", "semantics"), semantics, "ExactlyOnce needs the kafka or postgres sink"))
	}
	return errs
}

func validateDelivery(c *Config, path *field.Path) field.ErrorList {
	d := c.Delivery
	var errs field.ErrorList
	if d.Semantics != AtLeastOnce && d.Semantics != ExactlyOnce {
		errs = append(errs, field.NotSupported(path.Child("semantics"), d.Semantics, []string{AtLeastOnce, ExactlyOnce}))
	}
	errs = append(errs, validateTopic(path.Child("deadLetterTopic"), d.DeadLetterTopic)...)
	if d.DeadLetterTopic == c.Source.Topic {
		errs = append(errs, field.Invalid(path.Child("deadLetterTopic"), d.DeadLetterTopic, "must differ from source.topic"))
	}
	seen := map[string]bool{}
	for i, t := range d.RetryTopics {
		p := path.Child("retryTopics").Index(i)
		errs = append(errs, validateTopic(p, t)...)
		if t == c.Source.Topic || t == d.DeadLetterTopic || seen[t] {
			errs = append(errs, field.Invalid(p, t, "must differ from source.topic, delivery.deadLetterTopic and the other retry topics"))
		}
		seen[t] = true
	}
	if k := c.Sink.Kafka; k != nil && (k.Topic == d.DeadLetterTopic || seen[k.Topic]) {
		errs = append(errs, field.Invalid(field.NewPath("sink", "kafka", "topic"), k.Topic, "must differ from delivery.deadLetterTopic and the retry topics"))
	}
	if len(d.RetryTopics) > 0 {
		if d.Backoff.Initial.Duration <= 0 {
			errs = append(errs, field.Invalid(path.Child("backoff", "initial"), d.Backoff.Initial.String(), "must be positive"))
		}
		if d.Backoff.Multiplier < 1 {
			errs = append(errs, field.Invalid(path.Child("backoff", "multiplier"), d.Backoff.Multiplier, "must be at least 1"))
		}
		if d.Backoff.Max.Duration < d.Backoff.Initial.Duration {
			errs = append(errs, field.Invalid(path.Child("backoff", "max"), d.Backoff.Max.String(), "must not be less than backoff.initial"))
		}
	}
	if d.ProcessingTimeout.Duration <= 0 {
		errs = append(errs, field.Invalid(path.Child("processingTimeout"), d.ProcessingTimeout.String(), "must be positive"))
	}
	if d.ProcessingTimeout.Duration > c.Consumer.MaxPollInterval.Duration {
		errs = append(errs, field.Invalid(path.Child("processingTimeout"), d.ProcessingTimeout.String(),
			"must not exceed consumer.maxPollInterval: a record that takes longer gets the worker evicted from the group"))
	}
	return errs
}

// Bounds of the fetch sizes, the same as the API's.
const (
	minFetchBytes = 1 << 10
	maxFetchBytes = 256 << 20
)

func validateConsumer(c Consumer, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if c.MaxPollRecords < 1 {
		errs = append(errs, field.Invalid(path.Child("maxPollRecords"), c.MaxPollRecords, "must be at least 1"))
	}
	for name, d := range map[string]metav1.Duration{
		"maxPollInterval": c.MaxPollInterval, "sessionTimeout": c.SessionTimeout,
		"heartbeatInterval": c.HeartbeatInterval, "fetchMaxWait": c.FetchMaxWait, "shutdownTimeout": c.ShutdownTimeout,
	} {
		if d.Duration <= 0 {
			errs = append(errs, field.Invalid(path.Child(name), d.String(), "must be positive"))
		}
	}
	for name, n := range map[string]int32{"fetchMaxBytes": c.FetchMaxBytes, "maxPartitionFetchBytes": c.MaxPartitionFetchBytes} {
		if n != 0 && (n < minFetchBytes || n > maxFetchBytes) {
			errs = append(errs, field.Invalid(path.Child(name), n, fmt.Sprintf("must be between %d and %d bytes (0: the default)", minFetchBytes, maxFetchBytes)))
		}
	}
	if c.HeartbeatInterval.Duration*3 > c.SessionTimeout.Duration {
		errs = append(errs, field.Invalid(path.Child("heartbeatInterval"), c.HeartbeatInterval.String(), "must be at most a third of sessionTimeout"))
	}
	if c.SessionTimeout.Duration >= c.MaxPollInterval.Duration {
		errs = append(errs, field.Invalid(path.Child("sessionTimeout"), c.SessionTimeout.String(), "must be less than maxPollInterval"))
	}
	switch c.GroupProtocol {
	case "":
	case GroupProtocolConsumer:
		if c.StaticMembership {
			errs = append(errs, field.Forbidden(path.Child("groupProtocol"), "static membership with the KIP-848 protocol: Kafka refuses a restarted static member until its session times out"))
		}
	default:
		errs = append(errs, field.NotSupported(path.Child("groupProtocol"), c.GroupProtocol, []string{"", GroupProtocolConsumer}))
	}
	return errs
}

func validateBreaker(b CircuitBreaker, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if b.FailureThreshold < 1 {
		errs = append(errs, field.Invalid(path.Child("failureThreshold"), b.FailureThreshold, "must be at least 1"))
	}
	if b.OpenDuration.Duration <= 0 {
		errs = append(errs, field.Invalid(path.Child("openDuration"), b.OpenDuration.String(), "must be positive"))
	}
	return errs
}

func validateRateLimit(r RateLimit, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if r.RecordsPerSecond < 0 {
		errs = append(errs, field.Invalid(path.Child("recordsPerSecond"), r.RecordsPerSecond, "must not be negative (0 means unlimited)"))
	}
	if r.WarmupDuration.Duration < 0 {
		errs = append(errs, field.Invalid(path.Child("warmupDuration"), r.WarmupDuration.String(), "must not be negative"))
	}
	if r.WarmupDuration.Duration > 0 && r.WarmupRecordsPerSecond < 1 {
		errs = append(errs, field.Invalid(path.Child("warmupRecordsPerSecond"), r.WarmupRecordsPerSecond, "must be at least 1 while a warm-up is set"))
	}
	if r.RecordsPerSecond > 0 && r.WarmupRecordsPerSecond > r.RecordsPerSecond {
		errs = append(errs, field.Invalid(path.Child("warmupRecordsPerSecond"), r.WarmupRecordsPerSecond, "must not exceed recordsPerSecond"))
	}
	return errs
}

// validateHTTP checks the HTTP sink's URLs and credential files.
func validateHTTP(h *HTTPSink, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if h.URL != "" {
		errs = append(errs, validateHTTPURL(h.URL, path.Child("url"))...)
	}
	if h.Health.URL != "" {
		errs = append(errs, validateHTTPURL(h.Health.URL, path.Child("health", "url"))...)
	}
	switch h.Health.Method {
	case "", "HEAD", "GET", "OPTIONS":
	default:
		errs = append(errs, field.NotSupported(path.Child("health", "method"), h.Health.Method, []string{"HEAD", "GET", "OPTIONS"}))
	}
	if h.BearerTokenFile != "" && h.BasicAuth != nil {
		errs = append(errs, field.Invalid(path.Child("basicAuth"), "", "bearerTokenFile and basicAuth both set the Authorization header; set one"))
	}
	if b := h.BasicAuth; b != nil && (b.UsernameFile == "" || b.PasswordFile == "") {
		errs = append(errs, field.Required(path.Child("basicAuth"), "usernameFile and passwordFile"))
	}
	for i, hd := range h.Headers {
		if hd.Name == "" || hd.File == "" {
			errs = append(errs, field.Required(path.Child("headers").Index(i), "name and file"))
		}
	}
	return errs
}

// validateHTTPURL refuses what the API refuses: other schemes, and
// credentials in the URL (they would be printed in logs and DLQ headers).
func validateHTTPURL(raw string, path *field.Path) field.ErrorList {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return field.ErrorList{field.Invalid(path, raw, "must be an http:// or https:// URL: "+err.Error())}
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		return field.ErrorList{field.Invalid(path, u.Redacted(), "must be an http:// or https:// URL with a host")}
	case u.User != nil:
		return field.ErrorList{field.Invalid(path, u.Redacted(), "must not carry credentials (user:password@host); use a bearer token, basic auth or header files")}
	}
	return nil
}

// validHostPort says whether s is host:port with a port 1-65535.
func validHostPort(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 1 && n <= 65535
}

func validateProcessing(c *Config, path *field.Path) field.ErrorList {
	p := c.Processing
	switch p.Ordering {
	case "", OrderingPartition:
		return nil
	case OrderingKey, OrderingUnordered:
	default:
		return field.ErrorList{field.NotSupported(path.Child("ordering"), p.Ordering, []string{OrderingPartition, OrderingKey, OrderingUnordered})}
	}
	var errs field.ErrorList
	if p.MaxInFlight < 1 || p.MaxInFlight > MaxMaxInFlight {
		errs = append(errs, field.Invalid(path.Child("maxInFlight"), p.MaxInFlight, fmt.Sprintf("must be 1-%d with ordering %s", MaxMaxInFlight, p.Ordering)))
	}
	if c.Delivery.Semantics == ExactlyOnce {
		// Both exactly-once paths commit one contiguous position per partition
		// in one transaction per chunk (offsets in PostgreSQL, a Kafka
		// transaction): records finishing out of order have no place there.
		errs = append(errs, field.Invalid(path.Child("ordering"), p.Ordering,
			"ExactlyOnce needs ordering Partition; for Key or Unordered use AtLeastOnce with an idempotent sink (postgres upserts on the idempotency key)"))
	}
	if c.Consumer.MaxPollRecords < p.MaxInFlight {
		errs = append(errs, field.Invalid(field.NewPath("consumer", "maxPollRecords"), c.Consumer.MaxPollRecords,
			fmt.Sprintf("must be at least processing.maxInFlight (%d): one poll is all a worker has in flight", p.MaxInFlight)))
	}
	return errs
}

// validateShareCombination refuses what a share group member can't honour:
// no transactions, no order, no retry topics (its retries are redeliveries).
func validateShareCombination(c *Config) field.ErrorList {
	if !c.Source.IsShare() {
		return nil
	}
	var errs field.ErrorList
	if c.Delivery.Semantics == ExactlyOnce {
		errs = append(errs, field.Invalid(field.NewPath("delivery", "semantics"), c.Delivery.Semantics, "a share group has no transactions: use AtLeastOnce"))
	}
	if c.Processing.Ordering != OrderingUnordered {
		errs = append(errs, field.Invalid(field.NewPath("processing", "ordering"), c.Processing.Ordering, "a share group orders nothing: use Unordered"))
	}
	if len(c.Delivery.RetryTopics) > 0 {
		errs = append(errs, field.Forbidden(field.NewPath("delivery", "retryTopics"), "a share group retries by redelivery, not through retry topics"))
	}
	if c.Consumer.StaticMembership {
		errs = append(errs, field.Forbidden(field.NewPath("consumer", "staticMembership"), "static membership is a consumer group's (KIP-345): a share group has no assignment to keep"))
	}
	if c.Consumer.GroupProtocol != "" {
		errs = append(errs, field.Forbidden(field.NewPath("consumer", "groupProtocol"), "a share group has its own protocol"))
	}
	return errs
}
