package demo

import (
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

func pod(name, rev string, ready bool, startedSec int) podState {
	return podState{Name: name, Revision: rev, Ready: ready, Started: time.Unix(int64(startedSec), 0)}
}

func TestPlanRolloutConvergesLikeTheDeploymentController(t *testing.T) {
	cases := []struct {
		name               string
		desired            int
		current            string
		surge, unavailable int
		pods               []podState
		wantStart          int
		wantStop           []string
	}{
		{"nothing yet: start all", 3, "r1", 1, 0, nil, 3, nil},
		{"scale up by two", 3, "r1", 1, 0, []podState{pod("a", "r1", true, 1)}, 2, nil},
		{"steady", 2, "r1", 1, 0, []podState{pod("a", "r1", true, 1), pod("b", "r1", true, 2)}, 0, nil},
		{"scale down removes the newest", 1, "r1", 1, 0,
			[]podState{pod("a", "r1", true, 1), pod("b", "r1", true, 3), pod("c", "r1", true, 2)}, 0, []string{"b", "c"}},
		{"scale down removes a not-ready pod before a newer ready one", 2, "r1", 1, 0,
			[]podState{pod("a", "r1", false, 1), pod("b", "r1", true, 3), pod("c", "r1", true, 2)}, 0, []string{"a"}},
		{"terminating pods count for nothing", 2, "r1", 1, 0,
			[]podState{pod("a", "r1", true, 1), {Name: "b", Revision: "r1", Terminating: true}}, 1, nil},
		{"rollout starts with the surge, keeps the old pods", 2, "r2", 1, 0,
			[]podState{pod("a", "r1", true, 1), pod("b", "r1", true, 2)}, 1, nil},
		{"rollout: a new pod not ready yet keeps every old one", 2, "r2", 1, 0,
			[]podState{pod("a", "r1", true, 1), pod("b", "r1", true, 2), pod("n1", "r2", false, 3)}, 0, nil},
		{"rollout: a ready new pod lets one old pod go", 2, "r2", 1, 0,
			[]podState{pod("a", "r1", true, 1), pod("b", "r1", true, 2), pod("n1", "r2", true, 3)}, 0, []string{"b"}},
		{"rollout: unready old pods go at once", 2, "r2", 1, 0,
			[]podState{pod("a", "r1", false, 1), pod("b", "r1", true, 2)}, 1, []string{"a"}},
		{"rollout finishes", 2, "r2", 1, 0,
			[]podState{pod("a", "r1", true, 1), pod("n1", "r2", true, 3), pod("n2", "r2", true, 4)}, 0, []string{"a"}},
		{"scaled to zero", 0, "r2", 1, 0, []podState{pod("a", "r1", true, 1), pod("b", "r2", true, 2)}, 0, []string{"b", "a"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := planRollout(tc.desired, tc.current, tc.surge, tc.unavailable, tc.pods)
			if got.Start != tc.wantStart || !slices.Equal(got.Stop, tc.wantStop) {
				t.Errorf("planRollout = start %d stop %v, want start %d stop %v", got.Start, got.Stop, tc.wantStart, tc.wantStop)
			}
		})
	}
}

func TestSurgeAndUnavailableRoundLikeTheDeploymentController(t *testing.T) {
	pct := func(s string) *intstr.IntOrString { return ptr.To(intstr.FromString(s)) }
	n := func(i int32) *intstr.IntOrString { return ptr.To(intstr.FromInt32(i)) }
	cases := []struct {
		name                       string
		ru                         *appsv1.RollingUpdateDeployment
		desired                    int
		wantSurge, wantUnavailable int
	}{
		{"defaults: 25% each", nil, 4, 1, 1},
		{"surge rounds up, unavailable down", nil, 1, 1, 0},
		{"Sluice's workers: surge 25%, none unavailable", &appsv1.RollingUpdateDeployment{MaxSurge: pct("25%"), MaxUnavailable: n(0)}, 6, 2, 0},
		{"both zero would block: surge 1", &appsv1.RollingUpdateDeployment{MaxSurge: n(0), MaxUnavailable: n(0)}, 3, 1, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, u := surgeAndUnavailable(appsv1.DeploymentStrategy{RollingUpdate: tc.ru}, tc.desired)
			if s != tc.wantSurge || u != tc.wantUnavailable {
				t.Errorf("got surge %d unavailable %d, want %d %d", s, u, tc.wantSurge, tc.wantUnavailable)
			}
		})
	}
}

func TestRestartDelayDoublesAndResetsAfterAHealthyRun(t *testing.T) {
	cases := []struct {
		prev, ran, want time.Duration
	}{
		{0, 0, time.Second},
		{time.Second, time.Second, 2 * time.Second},
		{8 * time.Second, 2 * time.Second, 16 * time.Second},
		{16 * time.Second, time.Second, 30 * time.Second},
		{30 * time.Second, time.Second, 30 * time.Second},
		{30 * time.Second, 30 * time.Second, time.Second},
	}
	for _, tc := range cases {
		if got := restartDelay(tc.prev, tc.ran); got != tc.want {
			t.Errorf("restartDelay(%v, ran %v) = %v, want %v", tc.prev, tc.ran, got, tc.want)
		}
	}
}
