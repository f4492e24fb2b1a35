package controllers

import (
	"context"
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// writeStatus replaces the pipeline's whole status with sp.Status, whatever the
// API server holds now.
//
// A merge patch computed against the object this reconcile started from is
// only right when that object is current. Right after a status write the
// informer cache often is not (seen after every operator restart): the patch
// then carries only the lag fields that changed, onto a server status whose
// lag the previous write had removed, and the API server rejects the result
// (status.lag.total: Required value). A JSON patch that adds /status writes
// the complete status in one step and is valid from any starting point; only
// one reconcile of a pipeline runs at a time, so there is no other writer to
// overwrite.
func (r *StreamPipelineReconciler) writeStatus(ctx context.Context, sp *sluicev1.StreamPipeline) error {
	patch, err := statusPatch(sp.Status)
	if err != nil {
		return err
	}
	return r.Status().Patch(ctx, sp, client.RawPatch(types.JSONPatchType, patch))
}

// statusPatch is the JSON patch (RFC 6902) that sets /status to st: "add" of an
// existing member replaces it, and works on an object without a status too.
func statusPatch(st sluicev1.StreamPipelineStatus) ([]byte, error) {
	b, err := json.Marshal([]map[string]any{{"op": "add", "path": "/status", "value": st}})
	if err != nil {
		return nil, fmt.Errorf("encode status: %w", err)
	}
	return b, nil
}
