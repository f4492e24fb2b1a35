package failure

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestClassOf(t *testing.T) {
	base := errors.New("boom")
	cases := []struct {
		name string
		err  error
		want Class
	}{
		{"nil", nil, ""},
		{"poison", Poison(base), ClassPoison},
		{"wrapped poison", fmt.Errorf("sink: %w", Poison(base)), ClassPoison},
		{"transient", Transientf("503"), ClassTransient},
		{"deadline", context.DeadlineExceeded, ClassTransient},
		{"unclassified defaults to transient", base, ClassTransient},
		{"outermost wins", Transient(Poison(base)), ClassTransient},
	}
	for _, tc := range cases {
		if got := ClassOf(tc.err); got != tc.want {
			t.Errorf("%s: ClassOf = %q, want %q", tc.name, got, tc.want)
		}
	}
	if !errors.Is(Poison(base), base) {
		t.Error("classification must keep the cause reachable")
	}
}
