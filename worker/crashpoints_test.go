package worker

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// killPoint is a moment of a record's life at which the harness kills the
// worker handling it. kill waits for the moment, kills, and says whom, whether
// records were in flight, and what was.
type killPoint struct {
	name string
	// needsNewcomer: the point starts a stopped worker (a member joining).
	needsNewcomer bool
	kill          func(r *crashRun) (w *workerRun, inFlight bool, evidence string)
}

func (r *crashRun) points() []killPoint {
	if r.plan.g == kafkaExactlyOnce {
		return []killPoint{
			{name: "sink-call", kill: (*crashRun).killWhileOutputIsProduced},
			{name: "after-sink-ack", kill: (*crashRun).killAtTransactionCommit},
			{name: "copy-in-flight", kill: (*crashRun).killWhileDeadLetterCopyIsProduced},
			{name: "rebalance", needsNewcomer: true, kill: (*crashRun).killInTransactionWhileMemberJoins},
			{name: "shutdown", kill: (*crashRun).killShuttingDownTransaction},
		}
	}
	return []killPoint{
		{name: "sink-call", kill: (*crashRun).killDuringSinkStatement},
		{name: "after-sink-ack", kill: (*crashRun).killBeforeCommitLands},
		{name: "copy-in-flight", kill: (*crashRun).killWhileCopyIsProduced},
		{name: "rebalance", needsNewcomer: true, kill: (*crashRun).killInSinkCallWhileMemberJoins},
		{name: "copy-refused", kill: (*crashRun).killAtCommitAfterRefusedCopy},
		{name: "shutdown", kill: (*crashRun).killShuttingDownInSinkCall},
	}
}

// holdSinkCall picks a working worker and holds its next insert in
// PostgreSQL; it returns the worker and the held backends (none when no
// insert came in time).
func (r *crashRun) holdSinkCall() (*workerRun, []int32) {
	w := r.pickVictim(true)
	r.db.hold(w.pod)
	return w, r.db.waitHeld(w.pod, trapWithin)
}

// endHold ends a hold after the kill, alternately terminating the held
// statement (the write never happens) and letting it commit (the worker died
// before it learnt that its write took effect).
func (r *crashRun) endHold(point string, w *workerRun, pids []int32) string {
	terminate := !r.alternate(point)
	r.db.endHold(w.pod, pids, terminate)
	if terminate {
		return "then terminated (the write never happened)"
	}
	return "then let through (the write committed after the worker died)"
}

func heldEvidence(pids []int32, then string) (bool, string) {
	if len(pids) == 0 {
		return false, fmt.Sprintf("no insert came within %v", trapWithin)
	}
	return true, fmt.Sprintf("its insert held in PostgreSQL (backend %v), %s", pids, then)
}

// killDuringSinkStatement: during the sink call.
func (r *crashRun) killDuringSinkStatement() (*workerRun, bool, string) {
	w, pids := r.holdSinkCall()
	w.kill()
	inFlight, ev := heldEvidence(pids, r.endHold("sink-call", w, pids))
	return w, inFlight, ev
}

// killBeforeCommitLands: the sink acknowledged, the commit is on its way; it
// is dropped as its sender dies.
func (r *crashRun) killBeforeCommitLands() (*workerRun, bool, string) {
	fired := make(chan trapped, 1)
	tr := &trap{fn: func(req kmsg.Request) verdict {
		c := req.(*kmsg.OffsetCommitRequest)
		w := r.eligibleMember(c.MemberID)
		if w == nil || len(c.Topics) == 0 {
			return ignore
		}
		w.kill()
		fired <- trapped{w, fmt.Sprintf("its commit of %s went out after the sink acknowledged; dropped", r.describeCommit(c))}
		return dropped
	}}
	r.q.arm(tr, kmsg.OffsetCommit)
	return r.awaitTrap(tr, fired, "commit")
}

// killWhileCopyIsProduced: a retry or dead-letter copy is on its way; it is
// dropped or written as its sender dies.
func (r *crashRun) killWhileCopyIsProduced() (*workerRun, bool, string) {
	pass := r.alternate("copy-in-flight")
	fired := make(chan trapped, 1)
	tr := &trap{fn: func(req kmsg.Request) verdict {
		w, c := r.copySender(req.(*kmsg.ProduceRequest))
		if w == nil {
			return ignore
		}
		w.kill()
		if pass {
			fired <- trapped{w, fmt.Sprintf("its %s; written, unacknowledged", c)}
			return letThrough
		}
		fired <- trapped{w, fmt.Sprintf("its %s; dropped", c)}
		return dropped
	}}
	r.q.arm(tr, kmsg.Produce)
	return r.awaitTrap(tr, fired, "retry or dead-letter copy")
}

// copySender is the working worker that parks a copy in req, with the copy.
func (r *crashRun) copySender(req *kmsg.ProduceRequest) (*workerRun, string) {
	for _, c := range r.q.copiesIn(req, r.copyTopic) {
		if w := r.eligibleOwner(r.consumedFrom(c), c.partition); w != nil {
			return w, fmt.Sprintf("%s copy of %s[%d]@%d (attempt %d) was on its way", r.b.testName(c.topic), r.b.testName(c.origin), c.partition, c.offset, c.attempt)
		}
	}
	return nil, ""
}

// killAtCommitAfterRefusedCopy: a copy is refused (the broker answers with a
// non-retriable error), and the worker is killed as its next commit goes out;
// the commit lands. It may not reach past the refused record.
func (r *crashRun) killAtCommitAfterRefusedCopy() (*workerRun, bool, string) {
	refused := make(chan trapped, 1)
	tr := &trap{fn: func(req kmsg.Request) verdict {
		p := req.(*kmsg.ProduceRequest)
		w, c := r.copySender(p)
		if w == nil {
			return ignore
		}
		refused <- trapped{w, c}
		return verdict{resp: refuseProduce(p), handled: true, fired: true}
	}}
	r.q.arm(tr, kmsg.Produce)
	w, ok, what := r.awaitTrap(tr, refused, "retry or dead-letter copy")
	if !ok {
		return w, ok, what
	}
	r.mu.Lock()
	member := r.view.memberOf[w.clientID()]
	r.mu.Unlock()
	committed := make(chan trapped, 1)
	tr = &trap{fn: func(req kmsg.Request) verdict {
		c := req.(*kmsg.OffsetCommitRequest)
		if c.MemberID != member {
			return ignore
		}
		w.kill()
		committed <- trapped{w, r.describeCommit(c)}
		return letThrough
	}}
	r.q.arm(tr, kmsg.OffsetCommit)
	select {
	case ev := <-committed:
		return w, true, fmt.Sprintf("its %s, refused (INVALID_RECORD); killed as its next commit (%s) went out, which landed", what, ev.evidence)
	case <-time.After(trapWithin):
		r.q.disarm(tr)
		w.kill()
		return w, true, fmt.Sprintf("its %s, refused (INVALID_RECORD); no commit followed within %v, killed", what, trapWithin)
	}
}

// killInSinkCallWhileMemberJoins: during a rebalance. The victim's insert is
// held (it can't rejoin while its poll is being handled); it dies as a
// stopped worker's first JoinGroup reaches the broker.
func (r *crashRun) killInSinkCallWhileMemberJoins() (*workerRun, bool, string) {
	w, pids := r.holdSinkCall()
	joined := make(chan trapped, 1)
	tr := &trap{fn: func(req kmsg.Request) verdict {
		if req.(*kmsg.JoinGroupRequest).MemberID != "" {
			return ignore
		}
		w.kill()
		joined <- trapped{w, ""}
		return letThrough
	}}
	r.q.arm(tr, kmsg.JoinGroup)
	newcomer := r.startNewcomer()
	var joinedOK bool
	select {
	case <-joined:
		joinedOK = true
	case <-time.After(trapWithin):
		r.q.disarm(tr)
		w.kill()
	}
	then := r.endHold("rebalance", w, pids)
	inFlight, ev := heldEvidence(pids, then)
	if !joinedOK {
		return w, false, fmt.Sprintf("%s joined no group within %v; %s", newcomer.pod, trapWithin, ev)
	}
	return w, inFlight, fmt.Sprintf("killed as %s joined the group: %s", newcomer.pod, ev)
}

// startNewcomer starts a stopped worker: a member joining the group.
func (r *crashRun) startNewcomer() *workerRun {
	for _, s := range r.slots {
		if !s.up() {
			return s.start()
		}
	}
	r.t.Fatalf("no stopped worker to join the group")
	return nil
}

// killShuttingDownInSinkCall: during shutdown. SIGTERM while the victim's
// insert is held (the shutdown waits for it), SIGKILL shortly after.
func (r *crashRun) killShuttingDownInSinkCall() (*workerRun, bool, string) {
	w, pids := r.holdSinkCall()
	w.terminate()
	after := 100*time.Millisecond + rand.N(300*time.Millisecond)
	time.Sleep(after)
	exitedFirst := !w.running()
	w.kill()
	inFlight, ev := heldEvidence(pids, r.endHold("shutdown", w, pids))
	if exitedFirst {
		return w, false, fmt.Sprintf("SIGTERM; it exited within %v, before the SIGKILL (%s)", after, ev)
	}
	return w, inFlight, fmt.Sprintf("SIGTERM, SIGKILL %v later, still shutting down: %s", after.Round(time.Millisecond), ev)
}

// The kafka sink's points (transactions): a worker's transactional ID names
// its pod; a transaction is in flight from its first produce to its EndTxn.

// txnSender is the working worker whose transactional produce req is, when
// it writes to one of topics.
func (r *crashRun) txnSender(req *kmsg.ProduceRequest, topics ...string) (*workerRun, string) {
	if req.TransactionID == nil {
		return nil, ""
	}
	w := r.eligibleTxn(*req.TransactionID)
	if w == nil {
		return nil, ""
	}
	for _, t := range req.Topics {
		if name := r.b.testName(r.q.topicName(t)); slices.Contains(topics, name) {
			return w, name
		}
	}
	return nil, ""
}

// killOnTxnProduce kills the sender of the first transactional produce to
// one of topics, dropping it or letting it through.
func (r *crashRun) killOnTxnProduce(point, what string, topics ...string) (*workerRun, bool, string) {
	pass := r.alternate(point)
	fired := make(chan trapped, 1)
	tr := &trap{fn: func(req kmsg.Request) verdict {
		w, topic := r.txnSender(req.(*kmsg.ProduceRequest), topics...)
		if w == nil {
			return ignore
		}
		w.kill()
		if pass {
			fired <- trapped{w, fmt.Sprintf("its transaction's produce to %s was on its way; written, never committed", topic)}
			return letThrough
		}
		fired <- trapped{w, fmt.Sprintf("its transaction's produce to %s was on its way; dropped", topic)}
		return dropped
	}}
	r.q.arm(tr, kmsg.Produce)
	return r.awaitTrap(tr, fired, what)
}

// killWhileOutputIsProduced: during the sink call (the output produce).
func (r *crashRun) killWhileOutputIsProduced() (*workerRun, bool, string) {
	return r.killOnTxnProduce("sink-call", "output produce", "orders-out")
}

// killWhileDeadLetterCopyIsProduced: a dead-letter copy is on its way.
func (r *crashRun) killWhileDeadLetterCopyIsProduced() (*workerRun, bool, string) {
	return r.killOnTxnProduce("copy-in-flight", "dead-letter copy", "orders.dlq")
}

// killAtTransactionCommit: the outputs are acknowledged and the transaction
// commits; EndTxn is dropped (the broker aborts the transaction when it times
// out) or lands (the worker never learns it committed).
func (r *crashRun) killAtTransactionCommit() (*workerRun, bool, string) {
	pass := r.alternate("after-sink-ack")
	fired := make(chan trapped, 1)
	tr := &trap{fn: func(req kmsg.Request) verdict {
		end := req.(*kmsg.EndTxnRequest)
		w := r.eligibleTxn(end.TransactionalID)
		if w == nil || !end.Commit {
			return ignore
		}
		w.kill()
		if pass {
			fired <- trapped{w, "its transaction's outputs were acknowledged and its commit (EndTxn) went out; it landed"}
			return letThrough
		}
		fired <- trapped{w, "its transaction's outputs were acknowledged and its commit (EndTxn) went out; dropped, so the broker aborts it"}
		return dropped
	}}
	r.q.arm(tr, kmsg.EndTxn)
	return r.awaitTrap(tr, fired, "transaction commit")
}

// killOnNextTxnRequest arms a trap that kills w (or, with w nil, any working
// worker) at its next transactional request, a produce or an EndTxn, which is
// dropped.
func (r *crashRun) killOnNextTxnRequest(w *workerRun, what string) (*trap, <-chan trapped) {
	fired := make(chan trapped, 1)
	tr := &trap{fn: func(req kmsg.Request) verdict {
		var id, kind string
		switch req := req.(type) {
		case *kmsg.ProduceRequest:
			if req.TransactionID == nil {
				return ignore
			}
			id, kind = *req.TransactionID, "produce"
		case *kmsg.EndTxnRequest:
			id, kind = req.TransactionalID, "commit (EndTxn)"
			if !req.Commit {
				kind = "abort (EndTxn)"
			}
		}
		victim := r.eligibleTxn(id)
		if victim == nil || (w != nil && victim != w) {
			return ignore
		}
		victim.kill()
		fired <- trapped{victim, fmt.Sprintf("%s: its transaction's %s was on its way; dropped", what, kind)}
		return dropped
	}}
	r.q.arm(tr, kmsg.Produce, kmsg.EndTxn)
	return tr, fired
}

// killInTransactionWhileMemberJoins: during a rebalance: as a stopped worker's
// first JoinGroup reaches the broker, a working worker with an open
// transaction dies (or, if none has one open then, the next one to send a
// transactional request).
func (r *crashRun) killInTransactionWhileMemberJoins() (*workerRun, bool, string) {
	r.pickVictim(false)
	joined := make(chan trapped, 1)
	var newcomer *workerRun
	tr := &trap{fn: func(req kmsg.Request) verdict {
		if req.(*kmsg.JoinGroupRequest).MemberID != "" {
			return ignore
		}
		r.mu.Lock()
		var open []*workerRun
		for _, w := range r.view.eligible {
			if r.q.txnOpen(w.txnID(r.b.group)) {
				open = append(open, w)
			}
		}
		r.mu.Unlock()
		if len(open) == 0 {
			joined <- trapped{}
			return letThrough
		}
		w := open[rand.N(len(open))]
		w.kill()
		joined <- trapped{w, "its transaction was open"}
		return letThrough
	}}
	r.q.arm(tr, kmsg.JoinGroup)
	newcomer = r.startNewcomer()
	select {
	case ev := <-joined:
		if ev.w != nil {
			return ev.w, true, fmt.Sprintf("killed as %s joined the group: %s", newcomer.pod, ev.evidence)
		}
	case <-time.After(trapWithin):
		r.q.disarm(tr)
		w := r.pickVictim(false)
		w.kill()
		return w, false, fmt.Sprintf("%s joined no group within %v: killed anyway", newcomer.pod, trapWithin)
	}
	next, fired := r.killOnNextTxnRequest(nil, "killed while "+newcomer.pod+" joined the group")
	return r.awaitTrap(next, fired, "transactional request")
}

// killShuttingDownTransaction: during shutdown: SIGTERM, then SIGKILL at the
// worker's next transactional request (its last transaction finishing).
func (r *crashRun) killShuttingDownTransaction() (*workerRun, bool, string) {
	w := r.pickVictim(false)
	for deadline := time.Now().Add(trapWithin); !r.q.txnOpen(w.txnID(r.b.group)) && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond) // SIGTERM while a transaction is open
	}
	sent := time.Now()
	w.terminate()
	tr, fired := r.killOnNextTxnRequest(w, "SIGTERM")
	select {
	case ev := <-fired:
		return ev.w, true, fmt.Sprintf("%s %v after the SIGTERM", ev.evidence, time.Since(sent).Round(time.Millisecond))
	case <-time.After(3 * time.Second):
		r.q.disarm(tr)
		open := r.q.txnOpen(w.txnID(r.b.group))
		exited := !w.running()
		w.kill()
		if exited {
			return w, false, "SIGTERM; it exited within 3s, before any transactional request"
		}
		return w, open, fmt.Sprintf("SIGTERM; no transactional request within 3s; SIGKILL (transaction open: %v)", open)
	}
}

// describeCommit lists a commit's offsets (as the test names the topics).
func (r *crashRun) describeCommit(c *kmsg.OffsetCommitRequest) string {
	var parts []string
	for _, t := range c.Topics {
		for _, p := range t.Partitions {
			parts = append(parts, fmt.Sprintf("%s[%d]→%d", r.b.testName(r.q.nameOf(t.Topic, t.TopicID)), p.Partition, p.Offset))
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}
