package render

import (
	"path"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// SecretMount is one referenced Secret, projected into the worker pod as files.
// Secrets are mounted, never copied: the ConfigMap only names the files.
type SecretMount struct {
	// Volume is the pod volume name, also the folder under SecretsDir.
	Volume string
	// SecretName is the Secret in the pipeline's namespace.
	SecretName string
	// Keys are the Secret keys to project; each becomes a file of the same name.
	Keys []string
	// Field is the spec path of the reference, for error messages.
	Field string
}

// File is where key of this mount appears in the pod.
func (m SecretMount) File(key string) string { return path.Join(SecretsDir, m.Volume, key) }

// Volume names of the secret mounts.
const (
	volumeKafkaCA         = "kafka-ca"
	volumeKafkaClientCert = "kafka-client-cert"
	volumeKafkaSASL       = "kafka-sasl"
	volumePostgresDSN     = "postgres-dsn"
)

// SecretMounts lists the Secrets the pipeline references, in a stable order.
func SecretMounts(sp *sluicev1.StreamPipeline) []SecretMount {
	var mounts []SecretMount
	if tls := sp.Spec.Kafka.TLS; tls != nil {
		if tls.CASecretRef != nil {
			mounts = append(mounts, SecretMount{volumeKafkaCA, tls.CASecretRef.Name, []string{tls.CASecretRef.Key}, "spec.kafka.tls.caSecretRef"})
		}
		if tls.ClientCertSecretRef != nil {
			mounts = append(mounts, SecretMount{volumeKafkaClientCert, tls.ClientCertSecretRef.Name, []string{"tls.crt", "tls.key"}, "spec.kafka.tls.clientCertSecretRef"})
		}
	}
	if sasl := sp.Spec.Kafka.SASL; sasl != nil {
		mounts = append(mounts, SecretMount{volumeKafkaSASL, sasl.SecretRef.Name, []string{"username", "password"}, "spec.kafka.sasl.secretRef"})
	}
	if pg := sp.Spec.Sink.Postgres; pg != nil {
		mounts = append(mounts, SecretMount{volumePostgresDSN, pg.DSNSecretRef.Name, []string{pg.DSNSecretRef.Key}, "spec.sink.postgres.dsnSecretRef"})
	}
	return mounts
}

func findMount(mounts []SecretMount, volume string) (SecretMount, bool) {
	for _, m := range mounts {
		if m.Volume == volume {
			return m, true
		}
	}
	return SecretMount{}, false
}
