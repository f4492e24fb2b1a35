package workerconfig

import (
	"strings"
	"testing"
)

const validConfig = `
kafka: {bootstrapServers: ["127.0.0.1:9092"]}
source: {topic: orders, consumerGroup: shop.orders, startFrom: Earliest}
sink: {log: {format: JSON}}
delivery:
  semantics: AtLeastOnce
  retryTopics: [orders.retry.1, orders.retry.2]
  backoff: {initial: 1s, multiplier: 4, max: 10m}
  deadLetterTopic: orders.dlq
  processingTimeout: 30s
consumer: {maxPollRecords: 100, maxPollInterval: 10m, sessionTimeout: 45s, heartbeatInterval: 15s, fetchMaxWait: 500ms, shutdownTimeout: 10m}
circuitBreaker: {failureThreshold: 5, openDuration: 1m}
rateLimit: {warmupRecordsPerSecond: 100, warmupDuration: 2m}
startup: {maxJitter: 30s}
server: {port: 8080}
pipeline: {namespace: shop, name: orders}
`

func TestParseAcceptsAValidConfig(t *testing.T) {
	c, err := Parse([]byte(validConfig))
	if err != nil {
		t.Fatal(err)
	}
	if c.Consumer.SessionTimeout.Seconds() != 45 || c.Delivery.RetryTopics[1] != "orders.retry.2" {
		t.Errorf("parsed %+v", c)
	}
	// A rendered config round-trips.
	out, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(out); err != nil {
		t.Fatalf("round trip: %v", err)
	}
}

// TestParseAcceptsAShareGroupMember: what render writes for groupType Share.
func TestParseAcceptsAShareGroupMember(t *testing.T) {
	share := strings.NewReplacer(
		"startFrom: Earliest}", "startFrom: Earliest, groupType: Share, share: {retryAttempts: 3, deliveryCountLimit: 7, recordLockDuration: 1m}}",
		"  retryTopics: [orders.retry.1, orders.retry.2]\n", "",
		"pipeline: {", "processing: {ordering: Unordered, maxInFlight: 64}\npipeline: {",
	).Replace(validConfig)
	c, err := Parse([]byte(share))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Source.IsShare() || c.Source.Share.DeliveryCountLimit != 7 || c.Source.Share.RecordLockDuration.Minutes() != 1 {
		t.Errorf("parsed %+v", c.Source)
	}
	if _, err := Parse([]byte(strings.Replace(share, "semantics: AtLeastOnce", "semantics: ExactlyOnce", 1))); err == nil || !strings.Contains(err.Error(), "no transactions") {
		t.Errorf("a share group with ExactlyOnce: %v, want it refused (no transactions)", err)
	}
	static := strings.Replace(share, "heartbeatInterval: 15s", "heartbeatInterval: 15s, staticMembership: true", 1)
	if static == share {
		t.Fatal("the test config has no heartbeatInterval to put staticMembership next to")
	}
	if _, err := Parse([]byte(static)); err == nil || !strings.Contains(err.Error(), "consumer.staticMembership") {
		t.Errorf("a share group with static membership: %v, want it refused naming consumer.staticMembership", err)
	}
	if _, err := Parse([]byte(strings.Replace(validConfig, "heartbeatInterval: 15s", "heartbeatInterval: 15s, staticMembership: true", 1))); err != nil {
		t.Errorf("a consumer group with static membership: %v, want it accepted", err)
	}
}

func TestParseNamesTheBadField(t *testing.T) {
	cases := []struct {
		name, from, to string
		want           []string
	}{
		{"unknown field (a typo)", "maxPollRecords: 100", "maxPolRecords: 100", []string{`unknown field "consumer.maxPolRecords"`}},
		{"no bootstrap servers", `bootstrapServers: ["127.0.0.1:9092"]`, "bootstrapServers: []", []string{"kafka.bootstrapServers: Required value"}},
		{"heartbeat too slow", "heartbeatInterval: 15s", "heartbeatInterval: 20s", []string{"consumer.heartbeatInterval", "a third of sessionTimeout"}},
		{"no sink", "sink: {log: {format: JSON}}", "sink: {}", []string{"sink: Invalid value", "exactly one"}},
		{"exactly-once log sink", "semantics: AtLeastOnce", "semantics: ExactlyOnce", []string{"delivery.semantics", "kafka or postgres"}},
		{"dead-letter topic is the source", "deadLetterTopic: orders.dlq", "deadLetterTopic: orders", []string{"delivery.deadLetterTopic", "must differ from source.topic"}},
		{"bad topic name", "topic: orders,", "topic: 'orders/x',", []string{"source.topic: Invalid value"}},
		{"bad duration", "processingTimeout: 30s", "processingTimeout: soon", []string{"parse worker config"}},
		{"bad start", "startFrom: Earliest", "startFrom: Beginning", []string{"source.startFrom: Unsupported value"}},
		{"port out of range", "port: 8080", "port: 70000", []string{"server.port"}},
		{"fetch too small", "fetchMaxWait: 500ms,", "fetchMaxWait: 500ms, fetchMaxBytes: 100,", []string{"consumer.fetchMaxBytes", "between 1024 and 268435456"}},
		{"partition fetch too large", "fetchMaxWait: 500ms,", "fetchMaxWait: 500ms, maxPartitionFetchBytes: 1073741824,", []string{"consumer.maxPartitionFetchBytes"}},
		{"warm-up above limit", "rateLimit: {", "rateLimit: {recordsPerSecond: 50, ", []string{"rateLimit.warmupRecordsPerSecond"}},
		{"bootstrap port out of range", `bootstrapServers: ["127.0.0.1:9092"]`, `bootstrapServers: ["127.0.0.1:99999"]`, []string{"kafka.bootstrapServers[0]", "port 1-65535"}},
		{"bootstrap server without a port", `bootstrapServers: ["127.0.0.1:9092"]`, `bootstrapServers: ["kafka"]`, []string{"kafka.bootstrapServers[0]", "host:port"}},
		{"dead-letter topic is a retry topic", "deadLetterTopic: orders.dlq", "deadLetterTopic: orders.retry.2", []string{"delivery.retryTopics[1]", "must differ"}},
		{"the same retry topic twice", "retryTopics: [orders.retry.1, orders.retry.2]", "retryTopics: [orders.retry.1, orders.retry.1]", []string{"delivery.retryTopics[1]", "other retry topics"}},
		{"kafka sink writes to the dead-letter topic", "sink: {log: {format: JSON}}", "sink: {kafka: {topic: orders.dlq}}", []string{"sink.kafka.topic", "must differ from delivery.deadLetterTopic"}},
		{"processing longer than the poll interval", "processingTimeout: 30s", "processingTimeout: 11m", []string{"delivery.processingTimeout", "must not exceed consumer.maxPollInterval"}},
		{"postgres key column is the payload column", "sink: {log: {format: JSON}}", "sink: {postgres: {dsnFile: /dsn, table: t, keyColumn: id, payloadColumn: id}}", []string{"sink.postgres.payloadColumn", "must differ from keyColumn"}},
		{"http sink URL with credentials", "sink: {log: {format: JSON}}", "sink: {http: {url: 'http://u:p@svc/x', timeout: 5s}}", []string{"sink.http.url", "must not carry credentials"}},
		{"unknown group type", "startFrom: Earliest}", "startFrom: Earliest, groupType: Queue}", []string{"source.groupType: Unsupported value"}},
		{"share group without its limits", "startFrom: Earliest}", "startFrom: Earliest, groupType: Share}", []string{"source.share: Required value"}},
		{"share limits on a consumer group", "startFrom: Earliest}", "startFrom: Earliest, share: {retryAttempts: 1, deliveryCountLimit: 5, recordLockDuration: 30s}}", []string{"source.share: Forbidden"}},
		{"share group with retry topics, partition order and a delivery limit of 1", "startFrom: Earliest}", "startFrom: Earliest, groupType: Share, share: {retryAttempts: 1, deliveryCountLimit: 1, recordLockDuration: 30s}}",
			[]string{"source.share.deliveryCountLimit", "delivery.retryTopics: Forbidden", "processing.ordering", "use Unordered"}},
		{"several problems at once", "server: {port: 8080}\npipeline: {namespace: shop, name: orders}", "server: {port: 0}\npipeline: {namespace: shop, name: ''}", []string{"server.port", "pipeline.name"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(validConfig, tc.from) {
				t.Fatalf("test edit %q does not apply", tc.from)
			}
			_, err := Parse([]byte(strings.Replace(validConfig, tc.from, tc.to, 1)))
			if err == nil {
				t.Fatal("accepted an invalid config")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// FuzzParse feeds arbitrary bytes to the config parser: it must return a config
// or an error, never panic, and whatever it accepts must survive a round trip.
// Run longer by hand: go test -fuzz FuzzParse ./internal/workerconfig
func FuzzParse(f *testing.F) {
	f.Add([]byte(validConfig))
	f.Add([]byte("{}"))
	f.Add([]byte("kafka: {bootstrapServers: [1]}"))
	f.Add([]byte("consumer: {maxPollInterval: -1h}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			return
		}
		out, err := c.Marshal()
		if err != nil {
			t.Fatalf("marshal accepted config: %v", err)
		}
		if _, err := Parse(out); err != nil {
			t.Fatalf("accepted config does not round-trip: %v\n%s", err, out)
		}
	})
}
