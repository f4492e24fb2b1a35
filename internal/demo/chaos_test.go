package demo

import (
	"testing"
	"time"
)

func TestChaosKillsOnlyWorkersSettledInTheirGroup(t *testing.T) {
	const settle = 8 * time.Second
	settled := func(name string, pid int) runningPod {
		return runningPod{Name: name, PID: pid, RunningFor: time.Minute, SinceExit: -1}
	}
	pods := []runningPod{settled("a", 10), settled("b", 11)}
	restarted := settled("a", 12)
	restarted.RunningFor = 3 * time.Second
	restarted.SinceExit = 4 * time.Second
	longAgo := settled("a", 12)
	longAgo.SinceExit = 20 * time.Second
	members := []string{workerClientID("b"), workerClientID("a")}
	cases := []struct {
		name  string
		group groupView
		pods  []runningPod
		want  int
	}{
		{"stable, members are the processes", groupView{"Stable", members}, pods, 2},
		{"a rebalance is on: JoinGroups are pending", groupView{"PreparingRebalance", members}, pods, 0},
		{"the leader is assigning", groupView{"CompletingRebalance", members}, pods, 0},
		{"a started worker has not joined yet", groupView{"Stable", members[:1]}, pods, 0},
		{"a killed worker is not expired yet (same pod, restarted)",
			groupView{"Stable", append([]string{workerClientID("a")}, members...)}, pods, 0},
		{"a worker waits to restart", groupView{"Stable", members}, []runningPod{settled("a", 10), {Name: "b"}}, 0},
		{"a restarted worker may still be joining under its predecessor's client ID",
			groupView{"Stable", members}, []runningPod{restarted, settled("b", 11)}, 0},
		{"a worker restarted long ago is settled", groupView{"Stable", members}, []runningPod{longAgo, settled("b", 11)}, 2},
		{"a member that is no process of ours (leaving)", groupView{"Stable", append(members, workerClientID("c"))}, pods, 0},
		{"no workers", groupView{"Empty", nil}, nil, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := settledVictims(tc.group, tc.pods, settle); len(got) != tc.want {
				t.Errorf("settledVictims = %v, want %d", got, tc.want)
			}
		})
	}
}
