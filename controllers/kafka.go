package controllers

import (
	corev1 "k8s.io/api/core/v1"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/kafka"
)

// kafkaConn is how the operator reaches the pipeline's cluster: the same brokers
// and credentials the workers use, read from the Secrets reconcileSecrets
// fetched.
func kafkaConn(s *scope) kafka.Conn {
	return KafkaConnOf(s.sp, s.secrets)
}

// KafkaConnOf is the pipeline's Kafka connection from Secrets already read
// (PipelineSecrets): the operator's and the kubectl plugin's.
func KafkaConnOf(sp *sluicev1.StreamPipeline, secrets map[string]*corev1.Secret) kafka.Conn {
	k := sp.Spec.Kafka
	conn := kafka.Conn{Brokers: k.BootstrapServers}
	if k.TLS != nil {
		conn.TLS = &kafka.TLS{}
		if ref := k.TLS.CASecretRef; ref != nil {
			conn.TLS.CA = secrets[ref.Name].Data[ref.Key]
		}
		if ref := k.TLS.ClientCertSecretRef; ref != nil {
			conn.TLS.Cert = secrets[ref.Name].Data["tls.crt"]
			conn.TLS.Key = secrets[ref.Name].Data["tls.key"]
		}
	}
	if sasl := k.SASL; sasl != nil {
		data := secrets[sasl.SecretRef.Name].Data
		conn.SASL = &kafka.SASL{Mechanism: string(sasl.Mechanism), Username: string(data["username"]), Password: string(data["password"])}
	}
	return conn
}

// topicPolicy is the pipeline's policy for the topics Sluice provisions.
func topicPolicy(sp *sluicev1.StreamPipeline) kafka.TopicPolicy {
	t := sp.Spec.Topics
	return kafka.TopicPolicy{
		Partitions:        sluicev1.Int32Or(t.Partitions, 0),
		ReplicationFactor: int16(sluicev1.Int32Or(t.ReplicationFactor, sluicev1.DefaultReplicationFactor)),
		Configs: kafka.PolicyConfigs(
			sluicev1.Int32Or(t.MinInSyncReplicas, sluicev1.DefaultMinInSyncReplicas),
			sluicev1.DurationOr(t.Retention, sluicev1.DefaultRetention).Milliseconds()),
	}
}

// provisionedTopics are the retry topics and the dead-letter topic.
func provisionedTopics(sp *sluicev1.StreamPipeline) []string {
	return append(sp.RetryTopics(), sp.DeadLetterTopic())
}
