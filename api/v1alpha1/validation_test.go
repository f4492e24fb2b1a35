package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/testenv"
	"github.com/sluice-dev/sluice/internal/workerconfig"
)

const validPipeline = `
apiVersion: streaming.sluice.dev/v1alpha1
kind: StreamPipeline
metadata:
  name: orders
spec:
  kafka:
    bootstrapServers: ["kafka.kafka:9092"]
  source:
    topic: orders
  sink:
    http:
      url: http://orders-svc/events
`

// pipeline returns the valid pipeline above with edits applied: each edit sets
// (or, with a nil value, removes) the field at a dotted path under spec.
func pipeline(t *testing.T, name string, edits map[string]any) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(validPipeline), &u.Object); err != nil {
		t.Fatal(err)
	}
	u.SetName(name)
	u.SetNamespace(namespace)
	for path, v := range edits {
		fields := strings.Split(path, ".")
		if path == "metadata.name" {
			u.SetName(v.(string))
			continue
		}
		fields = append([]string{"spec"}, fields...)
		if v == nil {
			unstructured.RemoveNestedField(u.Object, fields...)
			continue
		}
		if err := unstructured.SetNestedField(u.Object, v, fields...); err != nil {
			t.Fatalf("set %s: %v", path, err)
		}
	}
	return u
}

// TestInvalidManifestsAreRejectedWithTheFieldNamed applies manifests that a team
// could plausibly write and checks that the API server refuses each one at
// admission with a message naming the field, so `kubectl apply` says what to fix.
func TestInvalidManifestsAreRejectedWithTheFieldNamed(t *testing.T) {
	long := strings.Repeat("a", 250)
	cases := []struct {
		name  string
		edits map[string]any
		want  []string // substrings of the API server's error
	}{
		{"no sink", map[string]any{"sink.http": nil},
			[]string{"spec.sink", "exactly one of sink.http, sink.postgres, sink.kafka or sink.log must be set"}},
		{"two sinks", map[string]any{"sink.log": map[string]any{}},
			[]string{"spec.sink", "exactly one of sink.http, sink.postgres, sink.kafka or sink.log must be set"}},
		{"heartbeat too close to session timeout", map[string]any{"consumer.heartbeatInterval": "20s", "consumer.sessionTimeout": "45s"},
			[]string{"spec.consumer.heartbeatInterval", "must be at most a third of consumer.sessionTimeout"}},
		{"session timeout not below max poll interval", map[string]any{"consumer.sessionTimeout": "15m", "consumer.maxPollInterval": "10m"},
			[]string{"spec.consumer.sessionTimeout", "must be less than consumer.maxPollInterval"}},
		{"min replicas above max", map[string]any{"scaling.minReplicas": int64(5), "scaling.maxReplicas": int64(2)},
			[]string{"spec.scaling.minReplicas", "must be less than or equal to scaling.maxReplicas"}},
		{"min ISR above replication factor", map[string]any{"topics.replicationFactor": int64(2), "topics.minInSyncReplicas": int64(3)},
			[]string{"spec.topics.minInSyncReplicas", "must be less than or equal to topics.replicationFactor"}},
		{"no bootstrap servers", map[string]any{"kafka.bootstrapServers": []any{}},
			[]string{"spec.kafka.bootstrapServers", "should have at least 1 items"}},
		{"bootstrap server without port", map[string]any{"kafka.bootstrapServers": []any{"kafka.kafka"}},
			[]string{"spec.kafka.bootstrapServers[0]", "must be host:port with a port 1-65535", "not kafka.kafka"}},
		{"bootstrap server port out of range", map[string]any{"kafka.bootstrapServers": []any{"kafka-0:9092", "kafka-1:99999"}},
			[]string{"spec.kafka.bootstrapServers[1]", "must be host:port with a port 1-65535", "not kafka-1:99999"}},
		{"bootstrap server port 0", map[string]any{"kafka.bootstrapServers": []any{"[::1]:0"}},
			[]string{"spec.kafka.bootstrapServers[0]", "port 1-65535"}},
		{"topic with a slash", map[string]any{"source.topic": "orders/eu"},
			[]string{"spec.source.topic", "should match"}},
		{"topic named ..", map[string]any{"source.topic": ".."},
			[]string{"spec.source.topic", "topic must not be '.' or '..'"}},
		{"topic longer than Kafka allows", map[string]any{"source.topic": long},
			[]string{"spec.source.topic", "may not be more than 249"}},
		{"dead-letter topic equals source", map[string]any{"delivery.deadLetterTopic": "orders"},
			[]string{"spec.delivery.deadLetterTopic", "must differ from source.topic"}},
		{"retry prefix produces the source topic", map[string]any{"source.topic": "orders.retry.1", "delivery.retry.topicPrefix": "orders.retry"},
			[]string{"spec.delivery.retry.topicPrefix", "must not include source.topic"}},
		{"default retry topics produce the source topic", map[string]any{"source.topic": "shop.retry.2", "source.consumerGroup": "shop"},
			[]string{"spec.delivery.retry.topicPrefix", "must not include source.topic"}},
		{"default dead-letter topic is the source", map[string]any{"source.topic": "shop.dlq", "source.consumerGroup": "shop"},
			[]string{"spec.delivery.deadLetterTopic", "must differ from source.topic"}},
		{"dead-letter topic equals a retry topic", map[string]any{"delivery.deadLetterTopic": "again.3", "delivery.retry.topicPrefix": "again"},
			[]string{"spec.delivery.deadLetterTopic", "must not be one of the retry topics"}},
		{"dead-letter topic equals a default retry topic", map[string]any{"delivery.deadLetterTopic": "shop.retry.1", "source.consumerGroup": "shop"},
			[]string{"spec.delivery.deadLetterTopic", "must not be one of the retry topics"}},
		{"kafka sink writes to the default dead-letter topic", map[string]any{"sink.http": nil, "sink.kafka": map[string]any{"topic": "shop.dlq"}, "source.consumerGroup": "shop"},
			[]string{"spec.sink.kafka.topic", "must differ from the dead-letter topic"}},
		{"kafka sink writes to a retry topic", map[string]any{"sink.http": nil, "sink.kafka": map[string]any{"topic": "again.2"}, "delivery.retry.topicPrefix": "again"},
			[]string{"spec.sink.kafka.topic", "retry topics"}},
		{"group too long for its default topics", map[string]any{"source.consumerGroup": strings.Repeat("g", 246)},
			[]string{"spec.source.consumerGroup", "too long for the default dead-letter topic", "too long for the default retry topics"}},
		{"max poll interval shorter than the processing timeout", map[string]any{"consumer.maxPollInterval": "20s", "delivery.processingTimeout": "1m"},
			[]string{"spec.delivery.processingTimeout", "must not exceed consumer.maxPollInterval"}},
		{"retry backoff longer than the retention", map[string]any{"delivery.retry.backoff.max": "2h", "topics.retention": "1h"},
			[]string{"spec.delivery.retry.backoff.max", "must be shorter than topics.retention"}},
		{"first retry delay longer than the retention", map[string]any{"delivery.retry.backoff.initial": "2h", "topics.retention": "1h"},
			[]string{"spec.delivery.retry.backoff.initial", "must be shorter than topics.retention"}},
		{"heartbeat too close to max poll interval", map[string]any{"consumer.heartbeatInterval": "10s", "consumer.maxPollInterval": "30s"},
			[]string{"spec.consumer.heartbeatInterval", "must be less than a third of consumer.maxPollInterval"}},
		{"postgres key column is the payload column", map[string]any{"sink.http": nil, "sink.postgres": map[string]any{"dsnSecretRef": map[string]any{"name": "pg", "key": "dsn"}, "table": "orders", "payloadColumn": "id"}},
			[]string{"spec.sink.postgres.payloadColumn", "must differ from keyColumn"}},
		{"SASL PLAIN without TLS", map[string]any{"kafka.sasl": map[string]any{"mechanism": "PLAIN", "secretRef": map[string]any{"name": "u"}}},
			[]string{"spec.kafka.sasl.mechanism", "PLAIN sends the password in clear text"}},
		{"pod label key Kubernetes refuses", map[string]any{"template.labels": map[string]any{"team name": "shop"}},
			[]string{"spec.template.labels", "label keys must be"}},
		{"pod label value Kubernetes refuses", map[string]any{"template.labels": map[string]any{"team": "shop floor!"}},
			[]string{"spec.template.labels[team]", "label values must be"}},
		{"pod annotation key Kubernetes refuses", map[string]any{"template.annotations": map[string]any{"/owner": "me"}},
			[]string{"spec.template.annotations", "annotation keys must be"}},
		{"env name Kubernetes refuses", map[string]any{"template.env": []any{map[string]any{"name": "A=B", "value": "1"}}},
			[]string{"spec.template.env[0].name", "printable ASCII characters other than '='"}},
		{"memory request above its limit", map[string]any{"template.resources": map[string]any{"requests": map[string]any{"memory": "1Gi"}, "limits": map[string]any{"memory": "256Mi"}}},
			[]string{"spec.template.resources", "must not exceed its resources.limits"}},
		{"bad duration: one error that says what a duration is", map[string]any{"consumer.sessionTimeout": "5 minutes"},
			[]string{"spec.consumer.sessionTimeout", "must be a positive Go duration like 30s"}},
		{"kafka sink writes to its own source", map[string]any{"sink.http": nil, "sink.kafka": map[string]any{"topic": "orders"}},
			[]string{"spec.sink.kafka.topic", "must differ from source.topic"}},
		{"exactly-once with the http sink", map[string]any{"delivery.semantics": "ExactlyOnce"},
			[]string{"spec.delivery.semantics", "ExactlyOnce needs a sink that supports it"}},
		{"unknown semantics", map[string]any{"delivery.semantics": "AtMostOnce"},
			[]string{"spec.delivery.semantics", "Unsupported value"}},
		{"negative duration", map[string]any{"consumer.maxPollInterval": "-5m"},
			[]string{"spec.consumer.maxPollInterval", "must be a positive Go duration"}},
		{"zero duration", map[string]any{"circuitBreaker.openDuration": "0s"},
			[]string{"spec.circuitBreaker.openDuration", "must be a positive Go duration"}},
		{"duration without unit", map[string]any{"sink.http.timeout": "5"},
			[]string{"spec.sink.http.timeout", "must be a positive Go duration"}},
		{"max poll records zero", map[string]any{"consumer.maxPollRecords": int64(0)},
			[]string{"spec.consumer.maxPollRecords", "should be greater than or equal to 1"}},
		{"fetch size too small", map[string]any{"consumer.fetchMaxBytes": int64(100)},
			[]string{"spec.consumer.fetchMaxBytes", "should be greater than or equal to 1024"}},
		{"partition fetch size too large", map[string]any{"consumer.maxPartitionFetchBytes": int64(1 << 30)},
			[]string{"spec.consumer.maxPartitionFetchBytes", "should be less than or equal to 268435456"}},
		{"backoff initial above max", map[string]any{"delivery.retry.backoff.initial": "20m", "delivery.retry.backoff.max": "10m"},
			[]string{"spec.delivery.retry.backoff.initial", "must not exceed delivery.retry.backoff.max"}},
		{"idempotency key from header and field", map[string]any{"idempotencyKey": map[string]any{"header": "id", "jsonField": "id"}},
			[]string{"spec.idempotencyKey", "needs exactly one of header or jsonField"}},
		{"unsupported SASL mechanism", map[string]any{"kafka.sasl": map[string]any{"mechanism": "GSSAPI", "secretRef": map[string]any{"name": "u"}}},
			[]string{"spec.kafka.sasl.mechanism", "Unsupported value"}},
		{"non-http URL", map[string]any{"sink.http.url": "ftp://orders"},
			[]string{"spec.sink.http.url", "must be an http:// or https:// URL"}},
		{"credentials in the URL", map[string]any{"sink.http.url": "https://user:hunter2@orders/events"},
			[]string{"spec.sink.http.url", "must not carry credentials", "sink.http.auth"}},
		{"bearer and basic auth both", map[string]any{"sink.http.auth": map[string]any{
			"bearerTokenSecretRef": map[string]any{"name": "t", "key": "token"}, "basicAuthSecretRef": map[string]any{"name": "b"}}},
			[]string{"spec.sink.http.auth", "at most one of bearerTokenSecretRef and basicAuthSecretRef"}},
		{"a header the worker sets itself", map[string]any{"sink.http.auth": map[string]any{
			"headers": []any{map[string]any{"name": "Idempotency-Key", "secretKeyRef": map[string]any{"name": "t", "key": "k"}}}}},
			[]string{"spec.sink.http.auth.headers[0].name", "set by the worker itself"}},
		{"a header name with a space", map[string]any{"sink.http.auth": map[string]any{
			"headers": []any{map[string]any{"name": "X Api Key", "secretKeyRef": map[string]any{"name": "t", "key": "k"}}}}},
			[]string{"spec.sink.http.auth.headers[0].name", "must be an HTTP header name"}},
		{"health check URL with credentials", map[string]any{"sink.http.healthCheck": map[string]any{"url": "http://a:b@orders/healthz"}},
			[]string{"spec.sink.http.healthCheck.url", "must not carry credentials"}},
		{"warm-up faster than the limit", map[string]any{"rateLimit.recordsPerSecond": int64(50), "rateLimit.warmup.recordsPerSecond": int64(100)},
			[]string{"spec.rateLimit.warmup.recordsPerSecond", "must not exceed rateLimit.recordsPerSecond"}},
		{"negative min replicas", map[string]any{"scaling.minReplicas": int64(-1)},
			[]string{"spec.scaling.minReplicas", "should be greater than or equal to 0"}},
		{"postgres table with SQL in it", map[string]any{"sink.http": nil, "sink.postgres": map[string]any{"dsnSecretRef": map[string]any{"name": "pg", "key": "dsn"}, "table": "orders; DROP TABLE x"}},
			[]string{"spec.sink.postgres.table", "should match"}},
		{"name too long for its worker objects", map[string]any{"metadata.name": strings.Repeat("p", 53)},
			[]string{"metadata.name must be at most 52 characters"}},
		{"unknown ordering", map[string]any{"processing.ordering": "ByKey"},
			[]string{"spec.processing.ordering", "Unsupported value", `"Partition", "Key", "Unordered"`}},
		{"maxInFlight with the default ordering Partition", map[string]any{"processing.maxInFlight": int64(8)},
			[]string{"spec.processing.maxInFlight", "maxInFlight applies to ordering Key or Unordered"}},
		{"maxInFlight with ordering Partition", map[string]any{"processing.ordering": "Partition", "processing.maxInFlight": int64(1)},
			[]string{"spec.processing.maxInFlight", "maxInFlight applies to ordering Key or Unordered"}},
		{"maxInFlight zero", map[string]any{"processing.ordering": "Key", "processing.maxInFlight": int64(0)},
			[]string{"spec.processing.maxInFlight", "should be greater than or equal to 1"}},
		{"maxInFlight above the worker's bound", map[string]any{"processing.ordering": "Unordered", "processing.maxInFlight": int64(workerconfig.MaxMaxInFlight + 1)},
			[]string{"spec.processing.maxInFlight", fmt.Sprintf("should be less than or equal to %d", workerconfig.MaxMaxInFlight)}},
		{"key ordering with Kafka transactions", map[string]any{"processing.ordering": "Key", "delivery.semantics": "ExactlyOnce",
			"sink.http": nil, "sink.kafka": map[string]any{"topic": "orders-out"}},
			[]string{"spec.processing.ordering", "can't be combined with delivery.semantics ExactlyOnce", "records that finish out of order", "AtLeastOnce with an idempotent sink"}},
		{"unordered with offsets in PostgreSQL", map[string]any{"processing.ordering": "Unordered", "delivery.semantics": "ExactlyOnce",
			"sink.http": nil, "sink.postgres": map[string]any{"dsnSecretRef": map[string]any{"name": "pg", "key": "dsn"}, "table": "orders"}},
			[]string{"spec.processing.ordering", "can't be combined with delivery.semantics ExactlyOnce", "AtLeastOnce with an idempotent sink"}},
		{"an unknown group type", map[string]any{"source.groupType": "Queue"},
			[]string{"spec.source.groupType", "Unsupported value", `"Consumer", "Share"`}},
		{"a share group with Kafka transactions", map[string]any{"source.groupType": "Share", "processing.ordering": "Unordered", "delivery.semantics": "ExactlyOnce",
			"sink.http": nil, "sink.kafka": map[string]any{"topic": "orders-out"}},
			[]string{"spec.source.groupType", "Share can't be combined with delivery.semantics ExactlyOnce", "no transactions"}},
		{"a share group with the default ordering (Partition)", map[string]any{"source.groupType": "Share"},
			[]string{"spec.processing.ordering", "set processing.ordering Unordered"}},
		{"a share group with key ordering", map[string]any{"source.groupType": "Share", "processing.ordering": "Key"},
			[]string{"spec.processing.ordering", "neither partition nor key order can hold"}},
		{"static members of a share group", map[string]any{"source.groupType": "Share", "processing.ordering": "Unordered", "consumer.membership": "Static"},
			[]string{"spec.consumer.membership", "Static is for consumer groups", "leave membership Dynamic"}},
		{"an unknown membership", map[string]any{"consumer.membership": "Sticky"},
			[]string{"spec.consumer.membership", "Unsupported value", `"Dynamic", "Static"`}},
		{"KIP-848 with static members", map[string]any{"consumer.groupProtocol": "Consumer", "consumer.membership": "Static"},
			[]string{"spec.consumer.groupProtocol", "UNRELEASED_INSTANCE_ID", "Use the Classic protocol with Static"}},
		{"KIP-848 for a share group", map[string]any{"source.groupType": "Share", "processing.ordering": "Unordered", "consumer.groupProtocol": "Consumer"},
			[]string{"spec.consumer.groupProtocol", "leave groupProtocol unset"}},
		{"an unknown group protocol", map[string]any{"consumer.groupProtocol": "Eager"},
			[]string{"spec.consumer.groupProtocol", "Unsupported value", `"Classic", "Consumer"`}},
		{"a poll smaller than maxInFlight", map[string]any{"processing.ordering": "Key", "processing.maxInFlight": int64(256), "consumer.maxPollRecords": int64(255)},
			[]string{"spec.consumer.maxPollRecords", "must be at least processing.maxInFlight"}},
		{"a poll smaller than the default maxInFlight", map[string]any{"processing.ordering": "Unordered", "consumer.maxPollRecords": int64(sluicev1.DefaultMaxInFlight - 1)},
			[]string{"spec.consumer.maxPollRecords", "must be at least processing.maxInFlight (default 64"}},
	}
	if len(cases) < 15 {
		t.Fatalf("the issue asks for at least 15 invalid manifests, have %d", len(cases))
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := pipeline(t, "invalid-"+string(rune('a'+i%26))+strings.Repeat("x", i/26), tc.edits)
			err := k8s.Create(context.Background(), obj)
			if err == nil {
				_ = k8s.Delete(context.Background(), obj)
				t.Fatalf("the API server accepted an invalid manifest")
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want an Invalid error, got %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestMinimalPipelineGetsTheSafeDefaults checks the defaults that encode the
// seed's safe settings are filled in at admission.
func TestMinimalPipelineGetsTheSafeDefaults(t *testing.T) {
	ctx := context.Background()
	obj := pipeline(t, "defaults", nil)
	if err := k8s.Create(ctx, obj); err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() { _ = k8s.Delete(ctx, obj) })

	sp := &sluicev1.StreamPipeline{}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(obj), sp); err != nil {
		t.Fatal(err)
	}
	s := sp.Spec
	timings := sp.Timings()
	backoffInitial, backoffMax := sp.RetryBackoff()
	checks := []struct {
		field     string
		got, want any
	}{
		// maxPollRecords follows processing.ordering (MaxPollRecords), so it
		// is not stored either.
		{"consumer.maxPollRecords (stored)", s.Consumer.MaxPollRecords == nil, true},
		{"consumer.maxPollRecords", sp.MaxPollRecords(), int32(100)},
		{"processing.ordering", s.Processing.Ordering, sluicev1.OrderingPartition},
		{"processing.maxInFlight (stored)", s.Processing.MaxInFlight == nil, true},
		{"processing.maxInFlight (one per partition)", sp.MaxInFlight(), int32(1)},
		// Timings that depend on each other are not stored: they default from
		// what is set (Timings), so none is written into the object.
		{"consumer.maxPollInterval (stored)", s.Consumer.MaxPollInterval == nil, true},
		{"consumer.maxPollInterval", timings.MaxPollInterval.String(), "10m0s"},
		{"consumer.sessionTimeout", timings.SessionTimeout.String(), "45s"},
		{"consumer.heartbeatInterval", timings.HeartbeatInterval.String(), "3s"},
		{"delivery.processingTimeout", timings.ProcessingTimeout.String(), "30s"},
		{"consumer.fetchMaxBytes", *s.Consumer.FetchMaxBytes, int32(1 << 20)},
		{"consumer.maxPartitionFetchBytes", *s.Consumer.MaxPartitionFetchBytes, int32(256 << 10)},
		{"startup.maxJitter", s.Startup.MaxJitter.Duration.String(), "30s"},
		{"rateLimit.warmup.recordsPerSecond", sp.WarmupRecordsPerSecond(), int32(100)},
		{"rateLimit.warmup.duration", s.RateLimit.Warmup.Duration.Duration.String(), "2m0s"},
		{"delivery.semantics", s.Delivery.Semantics, sluicev1.AtLeastOnce},
		{"delivery.retry.attempts", *s.Delivery.Retry.Attempts, int32(3)},
		{"delivery.retry.backoff.initial", backoffInitial.String(), "1s"},
		{"delivery.retry.backoff.max", backoffMax.String(), "10m0s"},
		{"topics.replicationFactor", *s.Topics.ReplicationFactor, int32(3)},
		{"topics.minInSyncReplicas", *s.Topics.MinInSyncReplicas, int32(2)},
		{"topics.retention", s.Topics.Retention.Duration.String(), "168h0m0s"},
		{"topics.deletionPolicy", s.Topics.DeletionPolicy, sluicev1.DeletionPolicyRetain},
		{"source.startFrom", s.Source.StartFrom, sluicev1.StartFromEarliest},
		{"scaling.minReplicas", *s.Scaling.MinReplicas, int32(1)},
		{"scaling.pollInterval", s.Scaling.PollInterval.Duration.String(), "2s"},
		{"sink.http.timeout", s.Sink.HTTP.Timeout.Duration.String(), "5s"},
		{"dead-letter topic (derived from the group)", sp.DeadLetterTopic(), namespace + ".defaults.dlq"},
		{"sink.http.healthCheck (unset: HEAD to the sink URL)", s.Sink.HTTP.HealthCheck == nil, true},
		{"consumer group (derived)", sp.ConsumerGroup(), namespace + ".defaults"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.field, c.got, c.want)
		}
	}
}

// TestNetworkPolicySampleIsAccepted: the sample NetworkPolicy of
// docs/security.md is a valid object for the API server.
func TestNetworkPolicySampleIsAccepted(t *testing.T) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "config", "samples", "networkpolicy_worker.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(data, &u.Object); err != nil {
		t.Fatal(err)
	}
	u.SetNamespace(namespace)
	if err := k8s.Create(context.Background(), u); err != nil {
		t.Fatalf("the API server refused the sample NetworkPolicy: %v", err)
	}
	_ = k8s.Delete(context.Background(), u)
}

// TestSamplesAreAccepted applies every sample under config/samples, so the
// documentation can't drift from the API.
func TestSamplesAreAccepted(t *testing.T) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(root, "config", "samples", "streaming_*.yaml"))
	if err != nil || len(files) < 4 {
		t.Fatalf("want one sample per sink under config/samples, found %v (%v)", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			u := &unstructured.Unstructured{}
			if err := yaml.Unmarshal(data, &u.Object); err != nil {
				t.Fatal(err)
			}
			u.SetNamespace(namespace)
			if err := k8s.Create(context.Background(), u, client.DryRunAll); err != nil {
				t.Fatalf("sample rejected: %v", err)
			}
		})
	}
}

// TestSensibleSingleSettingsAreAccepted: one setting alone must not be
// refused because of a default the user never wrote (each used to be).
func TestSensibleSingleSettingsAreAccepted(t *testing.T) {
	cases := []map[string]any{
		{"consumer.sessionTimeout": "10s"},
		{"consumer.maxPollInterval": "30s"},
		{"consumer.maxPollInterval": "20s"},
		{"consumer.heartbeatInterval": "20s"},
		{"rateLimit.recordsPerSecond": int64(50)},
		{"delivery.retry.backoff.max": "500ms"},
		{"delivery.retry.backoff.initial": "20m"},
		{"topics.retention": "5m"},
		{"delivery.processingTimeout": "20m"},
		{"kafka.sasl": map[string]any{"mechanism": "PLAIN", "secretRef": map[string]any{"name": "u"}}, "kafka.tls": map[string]any{}},
		{"template.labels": map[string]any{"example.com/team": "shop", "tier": ""}, "template.env": []any{map[string]any{"name": "1weird but-valid.NAME", "value": "x"}}},
		{"processing.ordering": "Key"},
		{"processing.ordering": "Unordered"},
		{"processing.ordering": "Partition"},
		{"processing.ordering": "Key", "processing.maxInFlight": int64(workerconfig.MaxMaxInFlight)},
		{"processing.ordering": "Unordered", "processing.maxInFlight": int64(1), "consumer.maxPollRecords": int64(1)},
		{"processing.ordering": "Key", "consumer.maxPollRecords": int64(sluicev1.DefaultMaxInFlight)},
		{"processing.ordering": "Key", "processing.maxInFlight": int64(256), "consumer.maxPollRecords": int64(256)},
		{"processing.ordering": "Key", "idempotencyKey": map[string]any{"jsonField": "order.id"}},
		{"processing.ordering": "Key", "sink.http": nil, "sink.postgres": map[string]any{"dsnSecretRef": map[string]any{"name": "pg", "key": "dsn"}, "table": "orders"}},
		{"processing.ordering": "Partition", "delivery.semantics": "ExactlyOnce", "sink.http": nil, "sink.kafka": map[string]any{"topic": "orders-out"}},
		{"consumer.maxPollRecords": int64(1)},
		{"source.groupType": "Share", "processing.ordering": "Unordered"},
		{"source.groupType": "Consumer"},
		{"consumer.membership": "Static"},
		{"consumer.groupProtocol": "Consumer"},
		{"consumer.groupProtocol": "Consumer", "consumer.membership": "Dynamic", "delivery.semantics": "ExactlyOnce", "sink.http": nil, "sink.kafka": map[string]any{"topic": "orders-out"}},
		{"consumer.membership": "Static", "delivery.semantics": "ExactlyOnce", "sink.http": nil, "sink.kafka": map[string]any{"topic": "orders-out"}},
		{"consumer.membership": "Dynamic", "source.groupType": "Share", "processing.ordering": "Unordered"},
	}
	for i, edits := range cases {
		obj := pipeline(t, "single-"+strconv.Itoa(i), edits)
		if err := k8s.Create(context.Background(), obj); err != nil {
			t.Errorf("%v refused: %v", edits, err)
			continue
		}
		_ = k8s.Delete(context.Background(), obj)
	}
}

// TestKeyOrderingAloneGetsDefaultsThatFollowIt: ordering Key alone is
// accepted, and neither maxInFlight nor maxPollRecords is stored, so both
// follow the ordering (64 in flight, 4 × 64 records per poll) and would
// follow a later change of it.
func TestKeyOrderingAloneGetsDefaultsThatFollowIt(t *testing.T) {
	ctx := context.Background()
	obj := pipeline(t, "key-defaults", map[string]any{"processing.ordering": "Key"})
	if err := k8s.Create(ctx, obj); err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() { _ = k8s.Delete(ctx, obj) })
	sp := &sluicev1.StreamPipeline{}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(obj), sp); err != nil {
		t.Fatal(err)
	}
	if sp.Spec.Processing.MaxInFlight != nil || sp.Spec.Consumer.MaxPollRecords != nil {
		t.Errorf("stored maxInFlight %v, maxPollRecords %v; want both unset", sp.Spec.Processing.MaxInFlight, sp.Spec.Consumer.MaxPollRecords)
	}
	if sp.Ordering() != sluicev1.OrderingKey || sp.MaxInFlight() != 64 || sp.MaxPollRecords() != 256 {
		t.Errorf("effective ordering %s, maxInFlight %d, maxPollRecords %d; want Key, 64, 256", sp.Ordering(), sp.MaxInFlight(), sp.MaxPollRecords())
	}
}

// TestGroupTypeCannotChange: Kafka keeps a group id to one group type, so
// source.groupType is fixed once the pipeline exists; it defaults to Consumer.
func TestGroupTypeCannotChange(t *testing.T) {
	ctx := context.Background()
	obj := pipeline(t, "group-type-fixed", nil)
	if err := k8s.Create(ctx, obj); err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() { _ = k8s.Delete(ctx, obj) })
	sp := &sluicev1.StreamPipeline{}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(obj), sp); err != nil {
		t.Fatal(err)
	}
	if sp.Spec.Source.GroupType != sluicev1.GroupTypeConsumer {
		t.Errorf("stored groupType %q, want the default Consumer", sp.Spec.Source.GroupType)
	}
	sp.Spec.Source.GroupType = sluicev1.GroupTypeShare
	sp.Spec.Processing.Ordering = sluicev1.OrderingUnordered
	err := k8s.Update(ctx, sp)
	if err == nil || !strings.Contains(err.Error(), "spec.source.groupType") || !strings.Contains(err.Error(), "can't change") {
		t.Errorf("changing groupType to Share: %v, want it refused naming spec.source.groupType", err)
	}
}
