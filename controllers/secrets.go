package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/render"
)

// reconcileSecrets checks that every referenced Secret exists with the keys the
// worker will read. Without this a typo would surface as pods stuck in
// CreateContainerConfigError; with it the pipeline says which Secret and key.
// Secrets are only read, never copied; the operator keeps what it read for this
// reconcile only (its own Kafka connection needs the credentials).
func (r *StreamPipelineReconciler) reconcileSecrets(ctx context.Context, s *scope) error {
	return readSecrets(ctx, r.APIReader, s)
}

// PipelineSecrets reads the Secrets sp references (by name), checking the
// keys the worker reads; for the kubectl plugin, with the user's credentials.
func PipelineSecrets(ctx context.Context, reader client.Reader, sp *sluicev1.StreamPipeline) (map[string]*corev1.Secret, error) {
	s := newScope(sp)
	if err := readSecrets(ctx, reader, s); err != nil {
		return nil, err
	}
	return s.secrets, nil
}

// readSecrets reads the Secrets s's pipeline references, uncached, into
// s.secrets; a missing Secret or key is a stalledError that names it. A
// StreamReplay reads its pipeline's the same way.
func readSecrets(ctx context.Context, reader client.Reader, s *scope) error {
	for _, m := range render.SecretMounts(s.sp) {
		secret := &corev1.Secret{}
		err := reader.Get(ctx, client.ObjectKey{Namespace: s.sp.Namespace, Name: m.SecretName}, secret)
		if apierrors.IsNotFound(err) {
			return stalled(sluicev1.ReasonSecretNotFound, "Secret %s/%s referenced by %s not found", s.sp.Namespace, m.SecretName, m.Field)
		}
		if err != nil {
			return fmt.Errorf("get Secret %s referenced by %s: %w", m.SecretName, m.Field, err)
		}
		for _, k := range m.Keys {
			if _, ok := secret.Data[k]; !ok {
				return stalled(sluicev1.ReasonSecretKeyNotFound, "Secret %s/%s referenced by %s has no key %q", s.sp.Namespace, m.SecretName, m.Field, k)
			}
		}
		s.secrets[m.SecretName] = secret
	}
	return nil
}
