package demo

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// Chaos SIGKILLs a random worker every interval, and the pod runner restarts
// it with backoff. kfake has a group defect (worker/harness_test.go,
// waitForDeadMembersToLeave): a member killed while its JoinGroup is pending
// is never expired, keeps its partitions, and the group stalls until the next
// rebalance that waits out the rebalance timeout. Real Kafka expires it by
// its session timeout. So chaos kills only a worker that is settled in its
// group, between rebalances, as workers on a real cluster usually die:
//   - the group is Stable: no JoinGroup is pending in it;
//   - its members are exactly the pipeline's running worker processes: every
//     started worker has joined, none is leaving;
//   - every process has run for at least settle (startup jitter + session
//     timeout) and none exited within settle: a member of a killed process
//     is expired by then, so a restarted worker, whose client ID is its
//     predecessor's, is never mistaken for a member that has joined;
//   - the pod runner starts and stops no pod while chaos checks and kills.
// See docs/demo.md.

// workerClientID is the Kafka client ID of a pod's consumer (worker/plumbing.go
// names it after POD_NAME).
func workerClientID(pod string) string { return "sluice-worker-" + pod }

// groupView is what chaos needs to know of a consumer group.
type groupView struct {
	State   string
	Members []string // client IDs
}

// settledVictims returns the pods chaos may kill: none unless the group is
// Stable, its members are exactly these pods' consumers, and every pod's
// process has run, and none has exited, for settle.
func settledVictims(g groupView, pods []runningPod, settle time.Duration) []runningPod {
	if g.State != "Stable" || len(pods) == 0 {
		return nil
	}
	want := make([]string, 0, len(pods))
	for _, p := range pods {
		if p.PID == 0 || p.RunningFor < settle || (p.SinceExit >= 0 && p.SinceExit < settle) {
			return nil // a worker is (re)starting: it may be joining, or its predecessor still a member
		}
		want = append(want, workerClientID(p.Name))
	}
	members := slices.Clone(g.Members)
	slices.Sort(members)
	slices.Sort(want)
	if !slices.Equal(members, want) {
		return nil
	}
	return pods
}

// chaosMonkey kills workers while the run lasts.
type chaosMonkey struct {
	runner   *podRunner
	admin    *kadm.Client
	groups   map[string]string // pipeline → consumer group
	interval time.Duration
	// settle is the pipelines' startup jitter plus session timeout.
	settle time.Duration
	events func(string, ...any)
	kills  atomic.Int64
}

func (c *chaosMonkey) run(ctx context.Context) {
	next := time.Now().Add(c.interval)
	for {
		wait := time.Until(next)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if c.killOne(ctx) {
			next = time.Now().Add(c.interval)
		} else {
			next = time.Now().Add(500 * time.Millisecond) // try again soon
		}
	}
}

// killOne SIGKILLs one settled worker, if there is one.
func (c *chaosMonkey) killOne(ctx context.Context) bool {
	byPipeline := map[string][]runningPod{}
	c.runner.acting.Lock()
	defer c.runner.acting.Unlock()
	for _, p := range c.runner.pods() {
		byPipeline[p.Pipeline] = append(byPipeline[p.Pipeline], p)
	}
	pipelines := make([]string, 0, len(c.groups))
	for p := range c.groups {
		pipelines = append(pipelines, p)
	}
	rand.Shuffle(len(pipelines), func(i, j int) { pipelines[i], pipelines[j] = pipelines[j], pipelines[i] })
	for _, pl := range pipelines {
		g, err := describeGroup(ctx, c.admin, c.groups[pl])
		if err != nil {
			continue
		}
		victims := settledVictims(g, byPipeline[pl], c.settle)
		if len(victims) == 0 {
			continue
		}
		v := victims[rand.N(len(victims))]
		pid, err := v.pod.kill()
		if err != nil {
			continue
		}
		c.kills.Add(1)
		c.events("chaos: SIGKILL %s (pid %d); its group %s was Stable with %d members", v.Name, pid, c.groups[pl], len(g.Members))
		return true
	}
	return false
}

func describeGroup(ctx context.Context, adm *kadm.Client, group string) (groupView, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	described, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return groupView{}, err
	}
	d, ok := described[group]
	if !ok {
		return groupView{}, nil
	}
	if d.Err != nil {
		return groupView{}, d.Err
	}
	g := groupView{State: d.State}
	for _, m := range d.Members {
		g.Members = append(g.Members, m.ClientID)
	}
	return g, nil
}

// logGroups writes each pipeline's consumer group to the log: its state, its
// members and every partition with lag and who holds it. The demo writes it
// when records are still on their way after the drain: a partition held by a
// member with no process (the kfake defect) shows here.
func logGroups(ctx context.Context, adm *kadm.Client, groups []string, pods []runningPod, logf func(string, ...any)) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	lags, err := adm.Lag(ctx, groups...)
	if err != nil {
		logf("group diagnostics: %v", err)
		return
	}
	running := map[string]bool{}
	for _, p := range pods {
		if p.PID != 0 {
			running[workerClientID(p.Name)] = true
		}
	}
	lags.Each(func(l kadm.DescribedGroupLag) {
		var members []string
		for _, m := range l.Members {
			note := ""
			if !running[m.ClientID] {
				note = " (no running process)"
			}
			members = append(members, m.ClientID+note)
		}
		logf("group %s: state %s, members %v", l.Group, l.State, members)
		for _, ml := range l.Lag.Sorted() {
			if ml.Lag == 0 {
				continue
			}
			holder := "nobody"
			if ml.Member != nil {
				holder = ml.Member.ClientID
			}
			logf("  %s[%d]: lag %d (committed %d, end %d), held by %s", ml.Topic, ml.Partition, ml.Lag, ml.Commit.At, ml.End.Offset, holder)
		}
	})
}
