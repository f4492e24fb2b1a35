package render

import (
	"fmt"
	"path"
	"strconv"

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
	volumeHTTPBearer      = "http-bearer"
	volumeHTTPBasic       = "http-basic"
	volumeHTTPHeader      = "http-header-" // + index
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
	if h := sp.Spec.Sink.HTTP; h != nil && h.Auth != nil {
		a := h.Auth
		if ref := a.BearerTokenSecretRef; ref != nil {
			mounts = append(mounts, SecretMount{volumeHTTPBearer, ref.Name, []string{ref.Key}, "spec.sink.http.auth.bearerTokenSecretRef"})
		}
		if ref := a.BasicAuthSecretRef; ref != nil {
			mounts = append(mounts, SecretMount{volumeHTTPBasic, ref.Name, []string{"username", "password"}, "spec.sink.http.auth.basicAuthSecretRef"})
		}
		for i, hd := range a.Headers {
			mounts = append(mounts, SecretMount{volumeHTTPHeader + strconv.Itoa(i), hd.SecretKeyRef.Name, []string{hd.SecretKeyRef.Key},
				fmt.Sprintf("spec.sink.http.auth.headers[%d].secretKeyRef", i)})
		}
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
