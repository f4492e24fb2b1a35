package render

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/workerconfig"
)

// shutdownMargin is added to the worker's drain timeout to get the pod's grace
// period: time to commit and leave the group after the last record is done.
const shutdownMargin = 15 * time.Second

// ShutdownTimeout bounds the worker's graceful drain: long enough to finish one
// poll batch. A batch is bounded both by maxPollInterval (Kafka evicts a member
// that takes longer) and by the longest chain of sink calls that must run one
// after the other, each up to processingTimeout:
//   - Partition: all of a poll's records may come from one partition, so
//     maxPollRecords calls in a row.
//   - Key: the same, since all of them may share one key (a hot key, or the
//     keyless records of a partition); maxInFlight helps only when keys differ,
//     which the operator can't know.
//   - Unordered: maxInFlight calls at a time, so ceil(maxPollRecords /
//     maxInFlight) rounds.
func ShutdownTimeout(sp *sluicev1.StreamPipeline) time.Duration {
	t := sp.Timings()
	calls := sp.MaxPollRecords()
	if sp.Ordering() == sluicev1.OrderingUnordered {
		n := sp.MaxInFlight()
		calls = (calls + n - 1) / n
	}
	return min(t.MaxPollInterval, time.Duration(calls)*t.ProcessingTimeout)
}

// TerminationGracePeriodSeconds is the pod's grace period: the drain timeout plus
// a margin to commit and leave the group, rounded up to whole seconds.
func TerminationGracePeriodSeconds(sp *sluicev1.StreamPipeline) int64 {
	d := ShutdownTimeout(sp) + shutdownMargin
	return int64((d + time.Second - 1) / time.Second)
}

// WorkerConfig renders the worker configuration of a pipeline. Secrets appear
// only as the paths of their mounted files.
func WorkerConfig(sp *sluicev1.StreamPipeline) workerconfig.Config {
	s := sp.Spec
	mounts := SecretMounts(sp)
	dur := func(d *metav1.Duration, def time.Duration) metav1.Duration {
		return metav1.Duration{Duration: sluicev1.DurationOr(d, def)}
	}

	timings := sp.Timings()
	backoffInitial, backoffMax := sp.RetryBackoff()
	cfg := workerconfig.Config{
		Pipeline: workerconfig.PipelineRef{Namespace: sp.Namespace, Name: sp.Name},
		Kafka:    workerconfig.Kafka{BootstrapServers: append([]string(nil), s.Kafka.BootstrapServers...)},
		Source: workerconfig.Source{
			Topic:         s.Source.Topic,
			ConsumerGroup: sp.ConsumerGroup(),
			StartFrom:     string(sp.PositionStartFrom()),
		},
		Delivery: workerconfig.Delivery{
			Semantics:   string(sp.Semantics()),
			RetryTopics: sp.RetryTopics(),
			Backoff: workerconfig.Backoff{
				Initial:    metav1.Duration{Duration: backoffInitial},
				Multiplier: sluicev1.Int32Or(s.Delivery.Retry.Backoff.Multiplier, sluicev1.DefaultBackoffMultiplier),
				Max:        metav1.Duration{Duration: backoffMax},
			},
			DeadLetterTopic:   sp.DeadLetterTopic(),
			ProcessingTimeout: metav1.Duration{Duration: timings.ProcessingTimeout},
		},
		Processing: processing(sp),
		Consumer: workerconfig.Consumer{
			MaxPollRecords:         sp.MaxPollRecords(),
			MaxPollInterval:        metav1.Duration{Duration: timings.MaxPollInterval},
			SessionTimeout:         metav1.Duration{Duration: timings.SessionTimeout},
			HeartbeatInterval:      metav1.Duration{Duration: timings.HeartbeatInterval},
			FetchMaxWait:           dur(s.Consumer.FetchMaxWait, sluicev1.DefaultFetchMaxWait),
			ShutdownTimeout:        metav1.Duration{Duration: ShutdownTimeout(sp)},
			FetchMaxBytes:          sluicev1.Int32Or(s.Consumer.FetchMaxBytes, sluicev1.DefaultFetchMaxBytes),
			MaxPartitionFetchBytes: sluicev1.Int32Or(s.Consumer.MaxPartitionFetchBytes, sluicev1.DefaultMaxPartitionFetchBytes),
			StaticMembership:       sp.Static(),
			GroupProtocol:          groupProtocol(sp),
		},
		CircuitBreaker: workerconfig.CircuitBreaker{
			FailureThreshold: sluicev1.Int32Or(s.CircuitBreaker.FailureThreshold, sluicev1.DefaultFailureThreshold),
			OpenDuration:     dur(s.CircuitBreaker.OpenDuration, sluicev1.DefaultOpenDuration),
		},
		RateLimit: workerconfig.RateLimit{
			RecordsPerSecond:       sluicev1.Int32Or(s.RateLimit.RecordsPerSecond, 0),
			WarmupRecordsPerSecond: sp.WarmupRecordsPerSecond(),
			WarmupDuration:         dur(s.RateLimit.Warmup.Duration, sluicev1.DefaultWarmupDuration),
		},
		Startup: workerconfig.Startup{MaxJitter: startupJitter(sp)},
		Server:  workerconfig.Server{Port: HealthPort},
	}

	if sp.Share() {
		// Only for share groups: a consumer pipeline's config (and so its
		// pods) stays the same as before the setting existed.
		cfg.Source.GroupType = workerconfig.GroupTypeShare
		cfg.Source.Share = &workerconfig.Share{
			RetryAttempts:      sp.RetryAttempts(),
			DeliveryCountLimit: sluicev1.ShareDeliveryCountLimit,
			RecordLockDuration: metav1.Duration{Duration: sp.ShareRecordLockDuration()},
		}
	}

	if tls := s.Kafka.TLS; tls != nil {
		cfg.Kafka.TLS = &workerconfig.TLS{}
		if m, ok := findMount(mounts, volumeKafkaCA); ok {
			cfg.Kafka.TLS.CAFile = m.File(m.Keys[0])
		}
		if m, ok := findMount(mounts, volumeKafkaClientCert); ok {
			cfg.Kafka.TLS.CertFile = m.File("tls.crt")
			cfg.Kafka.TLS.KeyFile = m.File("tls.key")
		}
	}
	if sasl := s.Kafka.SASL; sasl != nil {
		m, _ := findMount(mounts, volumeKafkaSASL)
		cfg.Kafka.SASL = &workerconfig.SASL{
			Mechanism:    string(sasl.Mechanism),
			UsernameFile: m.File("username"),
			PasswordFile: m.File("password"),
		}
	}

	switch {
	case s.Sink.HTTP != nil:
		cfg.Sink.HTTP = httpSink(s.Sink.HTTP, mounts)
	case s.Sink.Postgres != nil:
		pg := s.Sink.Postgres
		m, _ := findMount(mounts, volumePostgresDSN)
		cfg.Sink.Postgres = &workerconfig.PostgresSink{
			DSNFile:       m.File(pg.DSNSecretRef.Key),
			Table:         pg.Table,
			KeyColumn:     stringOr(pg.KeyColumn, sluicev1.DefaultPostgresKeyColumn),
			PayloadColumn: stringOr(pg.PayloadColumn, sluicev1.DefaultPostgresPayloadColumn),
		}
	case s.Sink.Kafka != nil:
		cfg.Sink.Kafka = &workerconfig.KafkaSink{Topic: s.Sink.Kafka.Topic}
	case s.Sink.Log != nil:
		cfg.Sink.Log = &workerconfig.LogSink{Format: stringOr(string(s.Sink.Log.Format), string(sluicev1.LogFormatJSON))}
	}

	if k := s.IdempotencyKey; k != nil {
		cfg.IdempotencyKey = &workerconfig.IdempotencyKey{Header: k.Header, JSONField: k.JSONField}
	}
	return cfg
}

// processing renders the ordering, always explicitly (an empty one also means
// Partition to the worker, but the ConfigMap shows the effective values), and
// maxInFlight for the orderings that have one: the worker config's maxInFlight
// counts across all of a worker's partitions, which Partition doesn't bound
// (it has one record at the sink per partition), so it is left out there.
func processing(sp *sluicev1.StreamPipeline) workerconfig.Processing {
	p := workerconfig.Processing{Ordering: string(sp.Ordering())}
	if sp.Concurrent() {
		p.MaxInFlight = sp.MaxInFlight()
	}
	return p
}

// ConfigMap renders the worker configuration into a ConfigMap and returns the
// hash of its content, which goes on the pod template so that any change rolls
// the pods.
func ConfigMap(sp *sluicev1.StreamPipeline) (*corev1.ConfigMap, string, error) {
	cfg := WorkerConfig(sp)
	data, err := cfg.Marshal()
	if err != nil {
		return nil, "", fmt.Errorf("render worker config: %w", err)
	}
	hint, err := ScaleUpHint(sp).Marshal()
	if err != nil {
		return nil, "", fmt.Errorf("render scale-up hint: %w", err)
	}
	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: objectMeta(sp, ConfigMapName(sp)),
		Data: map[string]string{
			workerconfig.FileName: string(data),
			// Not hashed: it changes with every scale-up and must roll nothing.
			workerconfig.ScaleUpFileName: string(hint),
		},
	}
	return cm, Hash(data), nil
}

// startupJitter is the workers' random delay before they join. Static members
// get none: their partitions wait for them while they are away (no one else
// takes them over), so a delay only lengthens the pause of a restart, and a
// rejoin causes no rebalance to stagger.
func startupJitter(sp *sluicev1.StreamPipeline) metav1.Duration {
	if sp.Static() {
		return metav1.Duration{}
	}
	return metav1.Duration{Duration: sluicev1.DurationOr(sp.Spec.Startup.MaxJitter, sluicev1.DefaultMaxJitter)}
}

// ScaleUpHint tells the workers a scale-up starts that they were added for
// capacity: they join at once instead of waiting their startup jitter, which
// is there to stagger a whole fleet (a first start, a rollout, a resume from
// suspend), not the few pods a backlog asks for.
func ScaleUpHint(sp *sluicev1.StreamPipeline) workerconfig.ScaleUp {
	ls := sp.Status.LastScale
	if ls == nil || ls.To <= ls.From || ls.Reason == sluicev1.ReasonResumed {
		return workerconfig.ScaleUp{}
	}
	return workerconfig.ScaleUp{At: ls.Time.DeepCopy(), From: ls.From, To: ls.To}
}

// Hash is a short, stable digest of data.
func Hash(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:8])
}

func stringOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// httpSink renders the HTTP sink: its credentials as the files of their
// mounts, the health check with its default method.
func httpSink(h *sluicev1.HTTPSink, mounts []SecretMount) *workerconfig.HTTPSink {
	out := &workerconfig.HTTPSink{URL: h.URL, Timeout: metav1.Duration{Duration: sluicev1.DurationOr(h.Timeout, sluicev1.DefaultHTTPTimeout)}}
	if a := h.Auth; a != nil {
		if ref := a.BearerTokenSecretRef; ref != nil {
			m, _ := findMount(mounts, volumeHTTPBearer)
			out.BearerTokenFile = m.File(ref.Key)
		}
		if a.BasicAuthSecretRef != nil {
			m, _ := findMount(mounts, volumeHTTPBasic)
			out.BasicAuth = &workerconfig.BasicAuthFiles{UsernameFile: m.File("username"), PasswordFile: m.File("password")}
		}
		for i, hd := range a.Headers {
			m, _ := findMount(mounts, volumeHTTPHeader+strconv.Itoa(i))
			out.Headers = append(out.Headers, workerconfig.HeaderFile{Name: hd.Name, File: m.File(hd.SecretKeyRef.Key)})
		}
	}
	out.Health.Method = string(sluicev1.HTTPHealthHEAD)
	if hc := h.HealthCheck; hc != nil {
		out.Health.URL, out.Health.Disabled = hc.URL, hc.Disabled
		if hc.Method != "" {
			out.Health.Method = string(hc.Method)
		}
	}
	return out
}

// groupProtocol is the worker's consumer.groupProtocol: set for KIP-848.
func groupProtocol(sp *sluicev1.StreamPipeline) string {
	if sp.NextGenGroup() {
		return workerconfig.GroupProtocolConsumer
	}
	return ""
}
