package controllers

import (
	"testing"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

func TestReplicasWithoutLag(t *testing.T) {
	cases := []struct {
		name     string
		min, max int32
		stopped  bool
		current  *int32
		want     int32
	}{
		{"new pipeline starts at min", 2, 5, false, nil, 2},
		{"min 0 still starts one worker: idleness is unproven without lag", 0, 5, false, nil, 1},
		{"current count within bounds is held", 1, 5, false, new(int32(3)), 3},
		{"current above max is capped", 1, 5, false, new(int32(9)), 5},
		{"current below min is raised", 4, 5, false, new(int32(2)), 4},
		{"resumed from zero comes back at min", 2, 5, false, new(int32(0)), 2},
		{"stopped (suspended, or held by a rewind) wins over everything", 3, 5, true, new(int32(4)), 0},
		{"stopped on create", 3, 5, true, nil, 0},
		{"min 0 never scales an existing pipeline to zero", 0, 5, false, new(int32(0)), 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sp := &sluicev1.StreamPipeline{Spec: sluicev1.StreamPipelineSpec{
				Scaling: sluicev1.ScalingSpec{MinReplicas: &tc.min, MaxReplicas: &tc.max},
			}}
			if got := replicasWithoutLag(sp, tc.stopped, tc.current); got != tc.want {
				t.Errorf("replicasWithoutLag = %d, want %d", got, tc.want)
			}
		})
	}
}
