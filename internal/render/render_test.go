package render

import (
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/workerconfig"
)

func basePipeline() *sluicev1.StreamPipeline {
	return &sluicev1.StreamPipeline{
		ObjectMeta: metav1.ObjectMeta{Name: "orders", Namespace: "shop", UID: "uid-1"},
		Spec: sluicev1.StreamPipelineSpec{
			Kafka:  sluicev1.KafkaSpec{BootstrapServers: []string{"kafka:9092"}},
			Source: sluicev1.SourceSpec{Topic: "orders"},
			Sink:   sluicev1.SinkSpec{HTTP: &sluicev1.HTTPSink{URL: "http://svc/events"}},
		},
	}
}

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

func TestTerminationGracePeriodCoversOnePollBatch(t *testing.T) {
	cases := []struct {
		name            string
		maxPollInterval *metav1.Duration
		maxPollRecords  *int32
		processing      *metav1.Duration
		want            int64
		ordering        sluicev1.Ordering
		maxInFlight     *int32
	}{
		{"defaults: bounded by maxPollInterval 10m", nil, nil, nil, 600 + 15, "", nil},
		{"small batches of fast records", dur(10 * time.Minute), new(int32(10)), dur(time.Second), 10 + 15, "", nil},
		{"short maxPollInterval wins", dur(2 * time.Minute), new(int32(1000)), dur(5 * time.Second), 120 + 15, "", nil},
		{"sub-second total rounds up", dur(time.Minute), new(int32(1)), dur(300 * time.Millisecond), 16, "", nil},
		// Unordered: maxInFlight calls at a time, ceil(records / maxInFlight) rounds.
		{"unordered: 1000 records, 100 at a time", dur(10 * time.Minute), new(int32(1000)), dur(5 * time.Second), 10*5 + 15, sluicev1.OrderingUnordered, new(int32(100))},
		{"unordered: a partial round counts whole", dur(10 * time.Minute), new(int32(1000)), dur(5 * time.Second), 4*5 + 15, sluicev1.OrderingUnordered, new(int32(300))},
		{"unordered defaults: 256 records, 64 at a time", dur(10 * time.Minute), nil, dur(time.Second), 4 + 15, sluicev1.OrderingUnordered, nil},
		// Key: one hot key can hold the whole poll, so no shorter than Partition.
		{"key: one key may serialize the poll", dur(10 * time.Minute), new(int32(100)), dur(time.Second), 100 + 15, sluicev1.OrderingKey, new(int32(50))},
		{"key defaults: 4 × 64 records", dur(10 * time.Minute), nil, dur(time.Second), 256 + 15, sluicev1.OrderingKey, nil},
		{"key: still bounded by maxPollInterval", dur(2 * time.Minute), nil, dur(5 * time.Second), 120 + 15, sluicev1.OrderingKey, new(int32(1024))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sp := basePipeline()
			sp.Spec.Consumer.MaxPollInterval = tc.maxPollInterval
			sp.Spec.Consumer.MaxPollRecords = tc.maxPollRecords
			sp.Spec.Delivery.ProcessingTimeout = tc.processing
			sp.Spec.Processing = sluicev1.ProcessingSpec{Ordering: tc.ordering, MaxInFlight: tc.maxInFlight}
			if got := TerminationGracePeriodSeconds(sp); got != tc.want {
				t.Errorf("grace period = %d, want %d", got, tc.want)
			}
			if cfg := WorkerConfig(sp); time.Duration(tc.want)*time.Second < cfg.Consumer.ShutdownTimeout.Duration+shutdownMargin {
				t.Errorf("the worker's drain timeout %v does not fit in the grace period", cfg.Consumer.ShutdownTimeout)
			}
		})
	}
}

func TestWorkerConfigPerSink(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(*sluicev1.StreamPipeline)
		check func(t *testing.T, c workerconfig.Config)
	}{
		{"http", func(*sluicev1.StreamPipeline) {}, func(t *testing.T, c workerconfig.Config) {
			if c.Sink.HTTP == nil || c.Sink.HTTP.URL != "http://svc/events" || c.Sink.HTTP.Timeout.Duration != 5*time.Second {
				t.Errorf("http sink = %+v", c.Sink.HTTP)
			}
		}},
		{"http credentials as mounted files, health check", func(sp *sluicev1.StreamPipeline) {
			sp.Spec.Sink.HTTP.Auth = &sluicev1.HTTPAuth{
				BearerTokenSecretRef: &sluicev1.SecretKeyRef{Name: "svc-token", Key: "token"},
				Headers:              []sluicev1.HTTPSecretHeader{{Name: "X-Api-Key", SecretKeyRef: sluicev1.SecretKeyRef{Name: "svc-key", Key: "key"}}},
			}
			sp.Spec.Sink.HTTP.HealthCheck = &sluicev1.HTTPHealthCheck{URL: "http://svc/healthz", Method: sluicev1.HTTPHealthGET}
		}, func(t *testing.T, c workerconfig.Config) {
			h := c.Sink.HTTP
			if h.BearerTokenFile != "/etc/sluice/secrets/http-bearer/token" || h.BasicAuth != nil ||
				len(h.Headers) != 1 || h.Headers[0] != (workerconfig.HeaderFile{Name: "X-Api-Key", File: "/etc/sluice/secrets/http-header-0/key"}) {
				t.Errorf("http credentials = %+v", h)
			}
			if h.Health != (workerconfig.HTTPHealth{URL: "http://svc/healthz", Method: "GET"}) {
				t.Errorf("health = %+v", h.Health)
			}
		}},
		{"http basic auth; health check defaults to HEAD on the sink URL", func(sp *sluicev1.StreamPipeline) {
			sp.Spec.Sink.HTTP.Auth = &sluicev1.HTTPAuth{BasicAuthSecretRef: &sluicev1.SecretRef{Name: "svc-basic"}}
		}, func(t *testing.T, c workerconfig.Config) {
			h := c.Sink.HTTP
			if h.BasicAuth == nil || *h.BasicAuth != (workerconfig.BasicAuthFiles{UsernameFile: "/etc/sluice/secrets/http-basic/username", PasswordFile: "/etc/sluice/secrets/http-basic/password"}) {
				t.Errorf("basic auth = %+v", h.BasicAuth)
			}
			if h.Health != (workerconfig.HTTPHealth{Method: "HEAD"}) {
				t.Errorf("health = %+v", h.Health)
			}
		}},
		{"postgres with its DSN as a mounted file", func(sp *sluicev1.StreamPipeline) {
			sp.Spec.Sink = sluicev1.SinkSpec{Postgres: &sluicev1.PostgresSink{
				DSNSecretRef: sluicev1.SecretKeyRef{Name: "pg", Key: "dsn"}, Table: "public.orders",
			}}
			sp.Spec.Delivery.Semantics = sluicev1.ExactlyOnce
		}, func(t *testing.T, c workerconfig.Config) {
			pg := c.Sink.Postgres
			if pg == nil || pg.DSNFile != "/etc/sluice/secrets/postgres-dsn/dsn" || pg.KeyColumn != "id" || pg.PayloadColumn != "payload" || pg.Table != "public.orders" {
				t.Errorf("postgres sink = %+v", pg)
			}
			if c.Delivery.Semantics != "ExactlyOnce" {
				t.Errorf("semantics = %s", c.Delivery.Semantics)
			}
		}},
		{"kafka", func(sp *sluicev1.StreamPipeline) {
			sp.Spec.Sink = sluicev1.SinkSpec{Kafka: &sluicev1.KafkaSink{Topic: "orders-enriched"}}
		}, func(t *testing.T, c workerconfig.Config) {
			if c.Sink.Kafka == nil || c.Sink.Kafka.Topic != "orders-enriched" {
				t.Errorf("kafka sink = %+v", c.Sink.Kafka)
			}
		}},
		{"log defaults to JSON", func(sp *sluicev1.StreamPipeline) {
			sp.Spec.Sink = sluicev1.SinkSpec{Log: &sluicev1.LogSink{}}
		}, func(t *testing.T, c workerconfig.Config) {
			if c.Sink.Log == nil || c.Sink.Log.Format != "JSON" {
				t.Errorf("log sink = %+v", c.Sink.Log)
			}
		}},
		{"tls and sasl become file paths", func(sp *sluicev1.StreamPipeline) {
			sp.Spec.Kafka.TLS = &sluicev1.KafkaTLSSpec{
				CASecretRef:         &sluicev1.SecretKeyRef{Name: "ca", Key: "ca.crt"},
				ClientCertSecretRef: &sluicev1.SecretRef{Name: "client"},
			}
			sp.Spec.Kafka.SASL = &sluicev1.KafkaSASLSpec{Mechanism: sluicev1.SASLScramSHA256, SecretRef: sluicev1.SecretRef{Name: "user"}}
		}, func(t *testing.T, c workerconfig.Config) {
			want := workerconfig.TLS{CAFile: "/etc/sluice/secrets/kafka-ca/ca.crt", CertFile: "/etc/sluice/secrets/kafka-client-cert/tls.crt", KeyFile: "/etc/sluice/secrets/kafka-client-cert/tls.key"}
			if c.Kafka.TLS == nil || *c.Kafka.TLS != want {
				t.Errorf("tls = %+v, want %+v", c.Kafka.TLS, want)
			}
			if c.Kafka.SASL == nil || c.Kafka.SASL.Mechanism != "SCRAM-SHA-256" || c.Kafka.SASL.PasswordFile != "/etc/sluice/secrets/kafka-sasl/password" {
				t.Errorf("sasl = %+v", c.Kafka.SASL)
			}
		}},
		{"tls with the system trust store", func(sp *sluicev1.StreamPipeline) {
			sp.Spec.Kafka.TLS = &sluicev1.KafkaTLSSpec{}
		}, func(t *testing.T, c workerconfig.Config) {
			if c.Kafka.TLS == nil || *c.Kafka.TLS != (workerconfig.TLS{}) {
				t.Errorf("tls = %+v", c.Kafka.TLS)
			}
		}},
		{"explicit group, DLQ and retry prefix", func(sp *sluicev1.StreamPipeline) {
			sp.Spec.Source.ConsumerGroup = "g1"
			sp.Spec.Delivery.DeadLetterTopic = "parked"
			sp.Spec.Delivery.Retry = sluicev1.RetrySpec{Attempts: new(int32(2)), TopicPrefix: "again"}
		}, func(t *testing.T, c workerconfig.Config) {
			if c.Source.ConsumerGroup != "g1" || c.Delivery.DeadLetterTopic != "parked" ||
				strings.Join(c.Delivery.RetryTopics, ",") != "again.1,again.2" {
				t.Errorf("names = %s %s %v", c.Source.ConsumerGroup, c.Delivery.DeadLetterTopic, c.Delivery.RetryTopics)
			}
		}},
		{"zero retry attempts go straight to the DLQ", func(sp *sluicev1.StreamPipeline) {
			sp.Spec.Delivery.Retry.Attempts = new(int32(0))
		}, func(t *testing.T, c workerconfig.Config) {
			if len(c.Delivery.RetryTopics) != 0 {
				t.Errorf("retry topics = %v", c.Delivery.RetryTopics)
			}
		}},
		{"idempotency key from a JSON field", func(sp *sluicev1.StreamPipeline) {
			sp.Spec.IdempotencyKey = &sluicev1.IdempotencyKeySpec{JSONField: "order.id"}
		}, func(t *testing.T, c workerconfig.Config) {
			if c.IdempotencyKey == nil || c.IdempotencyKey.JSONField != "order.id" {
				t.Errorf("idempotency key = %+v", c.IdempotencyKey)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sp := basePipeline()
			tc.edit(sp)
			cfg := WorkerConfig(sp)
			if err := cfg.Validate(); err != nil {
				t.Fatalf("rendered config is invalid: %v", err)
			}
			tc.check(t, cfg)
		})
	}
}

// TestProcessingRendersEffectiveValues: the ordering is always written out,
// maxInFlight and maxPollRecords get the defaults that follow the ordering,
// and the worker accepts every rendered config.
func TestProcessingRendersEffectiveValues(t *testing.T) {
	cases := []struct {
		name           string
		ordering       sluicev1.Ordering
		maxInFlight    *int32
		maxPollRecords *int32
		want           workerconfig.Processing
		wantPoll       int32
	}{
		{"nothing set: Partition, as before", "", nil, nil, workerconfig.Processing{Ordering: workerconfig.OrderingPartition}, 100},
		{"Partition written out", sluicev1.OrderingPartition, nil, nil, workerconfig.Processing{Ordering: workerconfig.OrderingPartition}, 100},
		{"Partition keeps a set maxPollRecords", sluicev1.OrderingPartition, nil, new(int32(7)), workerconfig.Processing{Ordering: workerconfig.OrderingPartition}, 7},
		{"Key alone: 64 in flight, 4 × 64 per poll", sluicev1.OrderingKey, nil, nil, workerconfig.Processing{Ordering: workerconfig.OrderingKey, MaxInFlight: 64}, 256},
		{"Unordered alone", sluicev1.OrderingUnordered, nil, nil, workerconfig.Processing{Ordering: workerconfig.OrderingUnordered, MaxInFlight: 64}, 256},
		{"Key, 256 in flight", sluicev1.OrderingKey, new(int32(256)), nil, workerconfig.Processing{Ordering: workerconfig.OrderingKey, MaxInFlight: 256}, 1024},
		{"small maxInFlight: a poll still holds 100", sluicev1.OrderingUnordered, new(int32(8)), nil, workerconfig.Processing{Ordering: workerconfig.OrderingUnordered, MaxInFlight: 8}, 100},
		{"largest maxInFlight", sluicev1.OrderingKey, new(int32(workerconfig.MaxMaxInFlight)), nil, workerconfig.Processing{Ordering: workerconfig.OrderingKey, MaxInFlight: workerconfig.MaxMaxInFlight}, 4 * workerconfig.MaxMaxInFlight},
		{"Key with maxPollRecords set", sluicev1.OrderingKey, nil, new(int32(500)), workerconfig.Processing{Ordering: workerconfig.OrderingKey, MaxInFlight: 64}, 500},
		{"Key with maxPollRecords equal to maxInFlight", sluicev1.OrderingKey, new(int32(300)), new(int32(300)), workerconfig.Processing{Ordering: workerconfig.OrderingKey, MaxInFlight: 300}, 300},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sp := basePipeline()
			sp.Spec.Processing = sluicev1.ProcessingSpec{Ordering: tc.ordering, MaxInFlight: tc.maxInFlight}
			sp.Spec.Consumer.MaxPollRecords = tc.maxPollRecords
			cfg := WorkerConfig(sp)
			if err := cfg.Validate(); err != nil {
				t.Fatalf("rendered config is invalid: %v", err)
			}
			if cfg.Processing != tc.want || cfg.Consumer.MaxPollRecords != tc.wantPoll {
				t.Errorf("processing = %+v, maxPollRecords = %d; want %+v, %d", cfg.Processing, cfg.Consumer.MaxPollRecords, tc.want, tc.wantPoll)
			}
		})
	}
}

// TestOrderingsMeanTheSameToTheWorker pins the API's ordering names to the
// worker config's: the renderer passes them through as strings.
func TestOrderingsMeanTheSameToTheWorker(t *testing.T) {
	for api, worker := range map[sluicev1.Ordering]string{
		sluicev1.OrderingPartition: workerconfig.OrderingPartition,
		sluicev1.OrderingKey:       workerconfig.OrderingKey,
		sluicev1.OrderingUnordered: workerconfig.OrderingUnordered,
	} {
		sp := basePipeline()
		sp.Spec.Processing.Ordering = api
		if got := WorkerConfig(sp).Processing.Ordering; got != worker {
			t.Errorf("ordering %s renders as %q, want %q", api, got, worker)
		}
	}
}

func TestConfigHashFollowsTheConfig(t *testing.T) {
	a, hashA, err := ConfigMap(basePipeline())
	if err != nil {
		t.Fatal(err)
	}
	_, hashAgain, _ := ConfigMap(basePipeline())
	if hashA != hashAgain {
		t.Fatalf("same spec, different hashes: %s %s", hashA, hashAgain)
	}
	changed := basePipeline()
	changed.Spec.Consumer.MaxPollRecords = new(int32(7))
	_, hashB, _ := ConfigMap(changed)
	if hashA == hashB {
		t.Fatal("a config change must change the hash (and so roll the pods)")
	}
	keyed := basePipeline()
	keyed.Spec.Processing.Ordering = sluicev1.OrderingKey
	if _, hashK, _ := ConfigMap(keyed); hashK == hashA {
		t.Fatal("an ordering change must change the hash (and so roll the pods)")
	}
	scaled := basePipeline()
	scaled.Spec.Scaling.MaxReplicas = new(int32(40))
	if _, hashC, _ := ConfigMap(scaled); hashC != hashA {
		t.Fatal("scaling bounds are not worker config: changing them must not roll the pods")
	}
	if a.Name != "orders-worker-config" || a.Namespace != "shop" {
		t.Errorf("configmap = %s/%s", a.Namespace, a.Name)
	}
}

func TestDeployment(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(*sluicev1.StreamPipeline)
		check func(t *testing.T, pod corev1.PodSpec, meta metav1.ObjectMeta)
	}{
		{"defaults: restricted security, default resources, spread over nodes", func(*sluicev1.StreamPipeline) {}, func(t *testing.T, pod corev1.PodSpec, _ metav1.ObjectMeta) {
			c := pod.Containers[0]
			sc := c.SecurityContext
			if !*sc.RunAsNonRoot || *sc.AllowPrivilegeEscalation || !*sc.ReadOnlyRootFilesystem || sc.Capabilities.Drop[0] != "ALL" || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("container security context = %+v", sc)
			}
			if *pod.SecurityContext.RunAsUser != WorkerUID || *pod.AutomountServiceAccountToken {
				t.Errorf("pod security = %+v automount=%v", pod.SecurityContext, *pod.AutomountServiceAccountToken)
			}
			if !c.Resources.Limits.Memory().Equal(resource.MustParse("256Mi")) {
				t.Errorf("resources = %+v", c.Resources)
			}
			if len(pod.TopologySpreadConstraints) != 1 || pod.TopologySpreadConstraints[0].WhenUnsatisfiable != corev1.ScheduleAnyway {
				t.Errorf("spread = %+v", pod.TopologySpreadConstraints)
			}
			if len(pod.Volumes) != 2 {
				t.Errorf("volumes = %+v (want config and tmp only)", pod.Volumes)
			}
		}},
		{"template overrides", func(sp *sluicev1.StreamPipeline) {
			sp.Spec.Template = &sluicev1.PodTemplateOverrides{
				Labels:          map[string]sluicev1.LabelValue{"team": "shop", sluicev1.LabelPipeline: "hijack"},
				Annotations:     map[string]string{"a": "b"},
				Resources:       &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}},
				Env:             []sluicev1.EnvVar{{Name: "LOG_LEVEL", Value: "debug"}, {Name: "POD_NAME", Value: "spoof"}, {Name: workerconfig.MemoryLimitEnv, Value: "1"}},
				NodeSelector:    map[string]string{"pool": "kafka"},
				Affinity:        &corev1.Affinity{},
				ImagePullPolicy: corev1.PullNever,
			}
		}, func(t *testing.T, pod corev1.PodSpec, meta metav1.ObjectMeta) {
			if meta.Labels["team"] != "shop" || meta.Labels[sluicev1.LabelPipeline] != "orders" {
				t.Errorf("labels = %v (the selector label must not be overridable)", meta.Labels)
			}
			if meta.Annotations["a"] != "b" || meta.Annotations[sluicev1.AnnotationConfigHash] != "h1" {
				t.Errorf("annotations = %v", meta.Annotations)
			}
			c := pod.Containers[0]
			if !c.Resources.Limits.Memory().Equal(resource.MustParse("1Gi")) || c.ImagePullPolicy != corev1.PullNever {
				t.Errorf("container = %+v", c)
			}
			var names []string
			for _, e := range c.Env {
				names = append(names, e.Name)
				if e.Name == workerconfig.MemoryLimitEnv {
					if ref := e.ValueFrom.ResourceFieldRef; ref == nil || ref.ContainerName != ContainerName || ref.Resource != "limits.memory" {
						t.Errorf("%s comes from %+v, want the worker container's limits.memory", workerconfig.MemoryLimitEnv, e.ValueFrom)
					}
				}
			}
			if strings.Join(names, ",") != "POD_NAME,POD_NAMESPACE,"+workerconfig.MemoryLimitEnv+",LOG_LEVEL" {
				t.Errorf("env = %v", names)
			}
			if pod.NodeSelector["pool"] != "kafka" || pod.TopologySpreadConstraints != nil {
				t.Errorf("scheduling = %v %v", pod.NodeSelector, pod.TopologySpreadConstraints)
			}
		}},
		{"secrets are mounted read-only, one volume each", func(sp *sluicev1.StreamPipeline) {
			sp.Spec.Kafka.SASL = &sluicev1.KafkaSASLSpec{Mechanism: sluicev1.SASLPlain, SecretRef: sluicev1.SecretRef{Name: "user"}}
			sp.Spec.Sink = sluicev1.SinkSpec{Postgres: &sluicev1.PostgresSink{DSNSecretRef: sluicev1.SecretKeyRef{Name: "pg", Key: "url"}, Table: "t"}}
		}, func(t *testing.T, pod corev1.PodSpec, _ metav1.ObjectMeta) {
			secrets := map[string][]string{}
			for _, v := range pod.Volumes {
				if v.Secret != nil {
					for _, it := range v.Secret.Items {
						secrets[v.Secret.SecretName] = append(secrets[v.Secret.SecretName], it.Key)
					}
				}
			}
			if strings.Join(secrets["user"], ",") != "username,password" || strings.Join(secrets["pg"], ",") != "url" {
				t.Errorf("secret volumes = %v", secrets)
			}
			for _, m := range pod.Containers[0].VolumeMounts {
				if strings.HasPrefix(m.MountPath, SecretsDir) && !m.ReadOnly {
					t.Errorf("secret mount %s is writable", m.MountPath)
				}
			}
		}},
		{"image override", func(sp *sluicev1.StreamPipeline) { sp.Spec.Image = "custom:1" }, func(t *testing.T, pod corev1.PodSpec, _ metav1.ObjectMeta) {
			if pod.Containers[0].Image != "custom:1" {
				t.Errorf("image = %s", pod.Containers[0].Image)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sp := basePipeline()
			tc.edit(sp)
			d := Deployment(sp, DeploymentParams{Image: "sluice:1", ConfigHash: "h1", Replicas: 3})
			if *d.Spec.Replicas != 3 || d.Name != "orders-worker" || d.OwnerReferences[0].UID != "uid-1" {
				t.Errorf("deployment meta = %s replicas=%d owners=%v", d.Name, *d.Spec.Replicas, d.OwnerReferences)
			}
			for k, v := range d.Spec.Selector.MatchLabels {
				if d.Spec.Template.Labels[k] != v {
					t.Fatalf("selector %s=%s does not match the pod labels %v", k, v, d.Spec.Template.Labels)
				}
			}
			tc.check(t, d.Spec.Template.Spec, d.Spec.Template.ObjectMeta)
		})
	}
}

// TestStatefulSetForStaticMembers: static members run as a StatefulSet whose
// pods are the Deployment's pod but for the revision label the spread counts
// by; they start in parallel and roll one slot at a time; the worker config
// makes them static members that join at once.
func TestStatefulSetForStaticMembers(t *testing.T) {
	sp := basePipeline()
	sp.Spec.Consumer.Membership = sluicev1.MembershipStatic
	sp.Spec.Startup.MaxJitter = &metav1.Duration{Duration: 30 * time.Second}
	p := DeploymentParams{Image: "sluice:1", ConfigHash: "h1", Replicas: 6}
	ss := StatefulSet(sp, p)
	if *ss.Spec.Replicas != 6 || ss.Name != "orders-worker" || ss.OwnerReferences[0].UID != "uid-1" {
		t.Errorf("statefulset meta = %s replicas=%d owners=%v", ss.Name, *ss.Spec.Replicas, ss.OwnerReferences)
	}
	if ss.Spec.PodManagementPolicy != appsv1.ParallelPodManagement || ss.Spec.UpdateStrategy.Type != appsv1.RollingUpdateStatefulSetStrategyType ||
		*ss.Spec.UpdateStrategy.RollingUpdate.Partition != 0 || len(ss.Spec.VolumeClaimTemplates) != 0 {
		t.Errorf("statefulset spec = %+v", ss.Spec)
	}
	d := Deployment(sp, p)
	want := d.Spec.Template.DeepCopy()
	want.Spec.TopologySpreadConstraints[0].MatchLabelKeys = []string{appsv1.StatefulSetRevisionLabel}
	if !equality.Semantic.DeepEqual(*want, ss.Spec.Template) {
		t.Errorf("the StatefulSet's pod differs from the Deployment's beyond the revision label:\n%+v\n%+v", ss.Spec.Template, *want)
	}
	cfg := WorkerConfig(sp)
	if !cfg.Consumer.StaticMembership || cfg.Startup.MaxJitter.Duration != 0 {
		t.Errorf("worker config: staticMembership=%v maxJitter=%s, want true and 0", cfg.Consumer.StaticMembership, cfg.Startup.MaxJitter.Duration)
	}
	sp.Spec.Consumer.Membership = sluicev1.MembershipDynamic
	if cfg := WorkerConfig(sp); cfg.Consumer.StaticMembership || cfg.Startup.MaxJitter.Duration != 30*time.Second {
		t.Errorf("dynamic worker config: staticMembership=%v maxJitter=%s", cfg.Consumer.StaticMembership, cfg.Startup.MaxJitter.Duration)
	}
}

func TestReprocessJobNameFitsALabel(t *testing.T) {
	long := strings.Repeat("r", 80)
	for _, c := range []struct{ replay, want string }{
		{"fix-amounts", "fix-amounts-reprocess"},
		{strings.Repeat("a", 53), strings.Repeat("a", 53) + "-reprocess"},
	} {
		if got := ReprocessJobName(c.replay); got != c.want {
			t.Errorf("ReprocessJobName(%q) = %q, want %q", c.replay, got, c.want)
		}
	}
	a, b := ReprocessJobName(long), ReprocessJobName(long+"x")
	if len(a) > 63 || len(b) > 63 || a == b || !strings.HasSuffix(a, "-reprocess") {
		t.Errorf("long names %q and %q: want distinct, at most 63 characters, ending in -reprocess", a, b)
	}
}
