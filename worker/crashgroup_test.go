package worker

import (
	"fmt"
	"slices"
	"time"
)

// groupView is the harness's picture of the group, refreshed while it waits:
// traps read it on kfake's goroutine, where they can't ask kfake.
type groupView struct {
	stable   bool
	byMember map[string]string // member ID → client ID
	memberOf map[string]string // client ID → member ID
	owner    map[tp]string     // partition → client ID of its owner
	// eligible are the running workers that delivered records since they
	// started and are members of the group, by client ID.
	eligible map[string]*workerRun
	progress map[string]string // client ID → what it handled since its start
}

// refreshView reads the group from kfake and each worker's progress.
func (r *crashRun) refreshView() {
	gi := r.b.cluster.GroupInfo(r.b.group)
	v := groupView{byMember: map[string]string{}, memberOf: map[string]string{}, owner: map[tp]string{},
		eligible: map[string]*workerRun{}, progress: map[string]string{}}
	if gi != nil {
		v.stable = gi.State == "Stable"
		for _, m := range gi.Members {
			v.byMember[m.MemberID] = m.ClientID
			v.memberOf[m.ClientID] = m.MemberID
			for topic, ps := range m.Assignment {
				for _, p := range ps {
					v.owner[tp{topic, p}] = m.ClientID
				}
			}
		}
	}
	for _, s := range r.slots {
		if !s.up() {
			continue
		}
		w := s.cur
		processed, desc := w.progress()
		v.progress[w.clientID()] = desc
		if processed > 0 && v.memberOf[w.clientID()] != "" {
			v.eligible[w.clientID()] = w
		}
	}
	r.mu.Lock()
	r.view = v
	r.mu.Unlock()
}

// eligibleMember is the working worker with a member ID, or nil.
func (r *crashRun) eligibleMember(memberID string) *workerRun {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.view.eligible[r.view.byMember[memberID]]
}

// eligibleTxn is the working worker with a transactional ID, or nil.
func (r *crashRun) eligibleTxn(txnID string) *workerRun {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range r.view.eligible {
		if w.txnID(r.b.group) == txnID {
			return w
		}
	}
	return nil
}

// eligibleOwner is the working worker that owns a partition, or nil.
func (r *crashRun) eligibleOwner(topic string, partition int32) *workerRun {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.view.eligible[r.view.owner[tp{topic, partition}]]
}

// waitReady restarts the killed workers (all but one when the next point
// needs a newcomer) and waits until the group is stable, no member belongs to
// a dead process, and a member is working. The killed members leave by their
// session or rebalance timeout; when one doesn't, the kfake defect that
// waitForDeadMembersToLeave describes has hit (a member killed while its
// first JoinGroup was pending is never expired, and keeps its partitions):
// then every worker stops, the group empties (with no live member kfake's
// timers do remove it), and they start again.
//
// A running worker may be no member for a while: kfake expired it while its
// JoinGroup waited (see the session timeout in newCrashRun); it goes on with
// its old partitions, its commits refused, until it rejoins by itself. The
// harness does not wait for it (it is never a victim meanwhile).
func (r *crashRun) waitReady(needsNewcomer bool) {
	r.t.Helper()
	keepDown := 0
	if needsNewcomer {
		keepDown = 1
	}
	var down []*slot
	for _, s := range r.slots {
		if !s.up() {
			down = append(down, s)
		}
	}
	for len(down) > keepDown {
		down[0].start()
		down = down[1:]
	}
	if len(down) < keepDown {
		r.t.Fatalf("the harness needs a stopped worker to join as the newcomer and has none")
	}
	for attempt := 1; ; attempt++ {
		deadline := time.Now().Add(readyWithin)
		for time.Now().Before(deadline) {
			r.supervise()
			r.refreshView()
			ghosts, _ := r.membership()
			r.mu.Lock()
			ok := r.view.stable && len(ghosts) == 0 && len(r.view.eligible) > 0
			r.mu.Unlock()
			if ok {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		ghosts, absent := r.membership()
		if attempt == 2 {
			r.dump("the group did not settle twice in %v (members of dead workers %v, workers not in the group %v)", readyWithin, ghosts, absent)
		}
		r.emptyGroup(fmt.Sprintf("members of dead workers %v, workers not in the group %v after %v", ghosts, absent, readyWithin))
	}
}

// membership compares the group's members with the running workers: ghosts
// are members of processes that are gone, absent are running workers that are
// not members.
func (r *crashRun) membership() (ghosts, absent []string) {
	running := map[string]bool{}
	for _, s := range r.slots {
		if s.up() {
			running[s.cur.clientID()] = true
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range r.view.memberOf {
		if !running[id] {
			ghosts = append(ghosts, id)
		}
	}
	for id := range running {
		if r.view.memberOf[id] == "" {
			absent = append(absent, id)
		}
	}
	slices.Sort(ghosts)
	slices.Sort(absent)
	return ghosts, absent
}

// emptyGroup is the workaround for kfake's unexpired members: every worker
// stops gracefully, the group empties, and they start again.
func (r *crashRun) emptyGroup(why string) {
	r.t.Helper()
	r.t.Logf("the group did not settle (%s): kfake keeps members it should expire; stopping every worker until the group is empty", why)
	r.workarounds = append(r.workarounds, why)
	var restart []*slot
	for _, s := range r.slots {
		if s.up() {
			r.stop(s)
			restart = append(restart, s)
		}
	}
	r.b.waitForDeadMembersToLeave(r.t, 60*time.Second)
	for _, s := range restart {
		s.start()
	}
}
