package workerconfig

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestScaleUpAddedBy(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) ScaleUp { return ScaleUp{At: &metav1.Time{Time: now.Add(-d)}, From: 1, To: 4} }
	cases := []struct {
		name string
		hint ScaleUp
		want bool
	}{
		{"no scale-up", ScaleUp{}, false},
		{"just scaled up", at(time.Second), true},
		{"at the end of the window", at(ScaleUpWindow), true},
		{"an old scale-up: a restart, not added capacity", at(ScaleUpWindow + time.Second), false},
		{"operator clock a little ahead", at(-5 * time.Second), true},
		{"far in the future: not trusted", at(-time.Minute), false},
	}
	for _, tc := range cases {
		if got := tc.hint.AddedBy(now); got != tc.want {
			t.Errorf("%s: AddedBy = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestLoadScaleUp(t *testing.T) {
	dir := t.TempDir()
	if s, err := LoadScaleUp(filepath.Join(dir, ScaleUpFileName)); err != nil || s.At != nil {
		t.Fatalf("missing file: %+v, %v; want no hint and no error", s, err)
	}
	at := metav1.NewTime(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	data, err := ScaleUp{At: &at, From: 2, To: 6}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, ScaleUpFileName)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := LoadScaleUp(path)
	if err != nil || s.At == nil || !s.At.Equal(&at) || s.From != 2 || s.To != 6 {
		t.Fatalf("round trip: %+v, %v", s, err)
	}
	if err := os.WriteFile(path, []byte("at: yesterday-ish\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadScaleUp(path); err == nil {
		t.Fatal("a malformed hint must be an error")
	}
}
