package workerconfig

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// ScaleUpFileName is the ConfigMap key (and file, next to FileName) that tells
// a starting worker whether the operator just scaled the pipeline up. It is
// not part of the config's hash: writing it changes no pod template, so it
// rolls nothing; pods read it once, when they start.
const ScaleUpFileName = "scale-up.yaml"

// ScaleUpWindow is how long after a scale-up a starting worker counts as one
// the scale-up added: pods start within seconds of it.
const ScaleUpWindow = 2 * time.Minute

// ScaleUp is the content of ScaleUpFileName.
type ScaleUp struct {
	// At is when the operator last raised the replica count for more
	// capacity (lag), unset when it never did or its last change was
	// something else (a scale-down, a resume from suspend).
	At *metav1.Time `json:"at,omitempty"`
	// From and To are the replica counts of that scale-up.
	From int32 `json:"from,omitempty"`
	To   int32 `json:"to,omitempty"`
}

// Marshal renders the hint as YAML.
func (s ScaleUp) Marshal() ([]byte, error) { return yaml.Marshal(s) }

// LoadScaleUp reads the hint at path; a missing file is no hint.
func LoadScaleUp(path string) (ScaleUp, error) {
	var s ScaleUp
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("read %s: %w", path, err)
	}
	if err := yaml.UnmarshalStrict(data, &s); err != nil {
		return s, fmt.Errorf("parse %s: %w", path, err)
	}
	return s, nil
}

// AddedBy reports whether a worker starting at now was started by this
// scale-up: within ScaleUpWindow after it (a little clock skew allowed).
func (s ScaleUp) AddedBy(now time.Time) bool {
	if s.At == nil {
		return false
	}
	age := now.Sub(s.At.Time)
	return age > -10*time.Second && age <= ScaleUpWindow
}
