package worker

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/internal/workerconfig"
	"github.com/sluice-dev/sluice/worker/failure"
)

// configuredKey reads the idempotency key the pipeline configures from a
// record. Without a configuration it returns "": the default key, the record's
// coordinates in the source topic (which survive retries through the origin
// headers), is formatted by sink.Record only when a sink needs it. A record
// without the configured header or JSON field, or with a value that isn't JSON,
// is a poison pill.
func configuredKey(spec *workerconfig.IdempotencyKey, r *kgo.Record) (string, error) {
	switch {
	case spec == nil:
		return "", nil
	case spec.Header != "":
		for _, h := range r.Headers {
			if h.Key == spec.Header && len(h.Value) > 0 {
				return string(h.Value), nil
			}
		}
		return "", failure.Poisonf("idempotency key: record has no header %q", spec.Header)
	default:
		return jsonKey(r.Value, spec.JSONField)
	}
}

func jsonKey(value []byte, path string) (string, error) {
	var doc any
	if err := json.Unmarshal(value, &doc); err != nil {
		return "", failure.Poisonf("idempotency key: value is not JSON: %w", err)
	}
	for _, field := range strings.Split(path, ".") {
		obj, ok := doc.(map[string]any)
		if !ok {
			return "", failure.Poisonf("idempotency key: %q: not an object at %q", path, field)
		}
		if doc, ok = obj[field]; !ok {
			return "", failure.Poisonf("idempotency key: record has no field %q", path)
		}
	}
	switch v := doc.(type) {
	case string:
		if v == "" {
			return "", failure.Poisonf("idempotency key: field %q is empty", path)
		}
		return v, nil
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	default:
		return "", failure.Poisonf("idempotency key: field %q is %T, want a string or a number", path, v)
	}
}
