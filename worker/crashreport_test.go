package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// crashReport is what a crash run found.
type crashReport struct {
	g     guarantee
	kills []killReport
	// records written, of which good (to reach the sink), poison pills (to
	// reach the dead-letter topic) and flaky (good, through retry topics).
	records, good, pills, flaky int
	// saw counts the sink's writes of good records (dead-letter copies too,
	// for the kafka sink); redeliveries are those past the first per key.
	saw, redeliveries int
	duplicates        []string // keys that took effect more than once
	missing           []string // keys that never took effect
	pillsInDLQ        int      // distinct poison pills in the dead-letter topic
	dlqCopies         int
	missingPills      []string
	workarounds       int
	selfExits         int
	took              time.Duration
	// order is the per-key order check (runs whose plan shares keys).
	order *keyOrder
}

// keyOrder is what the per-key order check found: per Kafka key, the order
// of its records' first effects in the delivery log.
type keyOrder struct {
	ordering    string
	maxInFlight int32
	keys        int // keys with a record checked
	checked     int // first effects checked
	// retried are the records left out: they went through a retry topic.
	retried int
	// violations are the records that took effect after a later record of
	// their key, in the log's order (the first is the earliest); badKeys the
	// keys they belong to.
	violations []string
	badKeys    int
}

func (rep crashReport) inFlight() int {
	n := 0
	for _, k := range rep.kills {
		if k.inFlight {
			n++
		}
	}
	return n
}

// String is the report the run logs at its end.
func (rep crashReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "CRASH HARNESS REPORT — %s\n", rep.g)
	pct := 0
	if len(rep.kills) > 0 {
		pct = 100 * rep.inFlight() / len(rep.kills)
	}
	fmt.Fprintf(&b, "  kills: %d; landed while records were in flight: %d (%d%%, must be at least 80%%)\n", len(rep.kills), rep.inFlight(), pct)
	var order []string
	by := map[string][2]int{}
	for _, k := range rep.kills {
		c, seen := by[k.point]
		if !seen {
			order = append(order, k.point)
		}
		c[1]++
		if k.inFlight {
			c[0]++
		}
		by[k.point] = c
	}
	var points []string
	for _, p := range order {
		points = append(points, fmt.Sprintf("%s %d/%d", p, by[p][0], by[p][1]))
	}
	fmt.Fprintf(&b, "  in flight by point: %s\n", strings.Join(points, ", "))
	flaky := fmt.Sprintf("%d flaky through the retry topics", rep.flaky)
	allowed := "allowed at-least-once: ON CONFLICT DO NOTHING kept one effect each"
	switch rep.g {
	case postgresExactlyOnce:
		allowed = "exactly-once: a chunk read again is fenced by the stored offset before it writes"
	case kafkaExactlyOnce:
		flaky = "no retry topics in this mode"
		allowed = "in aborted transactions, which a read_committed reader never sees"
	}
	fmt.Fprintf(&b, "  records: %d (%d good, %d poison pills, %s)\n", rep.records, rep.good, rep.pills, flaky)
	fmt.Fprintf(&b, "  the sink saw %d writes; redeliveries: %d (%s)\n", rep.saw, rep.redeliveries, allowed)
	fmt.Fprintf(&b, "  duplicate effects: %d (must be 0)%s\n", len(rep.duplicates), listed(rep.duplicates))
	fmt.Fprintf(&b, "  missing: %d (must be 0)%s\n", len(rep.missing), listed(rep.missing))
	fmt.Fprintf(&b, "  poison pills in the dead-letter topic: %d of %d (%d copies)%s\n", rep.pillsInDLQ, rep.pills, rep.dlqCopies, listed(rep.missingPills))
	if o := rep.order; o != nil {
		fmt.Fprintf(&b, "  per-key order (ordering %s, maxInFlight %d): %d keys, %d first effects checked (%d records through the retry topics left out); out of order: %d records in %d keys (must be 0)%s\n",
			o.ordering, o.maxInFlight, o.keys, o.checked, o.retried, len(o.violations), o.badKeys, listed(o.violations))
	}
	fmt.Fprintf(&b, "  kfake membership workarounds: %d; workers that exited on their own: %d; took %v", rep.workarounds, rep.selfExits, rep.took.Round(time.Second))
	return b.String()
}

func listed(keys []string) string {
	if len(keys) == 0 {
		return ""
	}
	return ": " + keysOf(keys, 20)
}

// drainAndReport ends the flow, rolls the workers (every one stops gracefully,
// the group empties, a last batch of records arrives, they start again), lets
// them finish, stops them, and checks what the sink saw.
//
// With offsets in PostgreSQL, Kafka's commit is moved to the end of the source
// topic during the rollout, ahead of the database: the workers must resume
// where the database says, or the last records are missing.
func (r *crashRun) drainAndReport() crashReport {
	r.t.Helper()
	r.flow.halt()
	written := r.flow.written()
	for _, s := range r.slots {
		if s.up() {
			r.stop(s)
		}
	}
	r.b.waitForDeadMembersToLeave(r.t, 60*time.Second)
	total := written + tailRecords
	if err := r.produce(written, total); err != nil {
		r.t.Fatal(err)
	}
	if r.plan.g == postgresExactlyOnce {
		r.commitKafkaAtTheEnd()
	}
	for _, s := range r.slots {
		s.start()
	}
	r.waitDrained(total)
	for _, s := range r.slots {
		if s.up() {
			r.stop(s)
		}
	}
	rep := r.report(total)
	r.t.Log(rep.String())
	r.check(rep)
	return rep
}

// commitKafkaAtTheEnd commits the end of the source topic for the (empty)
// group: a Kafka commit that is wrong (reset, or ahead of a database restored
// from a backup).
func (r *crashRun) commitKafkaAtTheEnd() {
	r.t.Helper()
	ctx := context.Background()
	ends, err := r.b.admin.ListEndOffsets(ctx, r.b.name("orders"))
	if err != nil {
		r.t.Fatal(err)
	}
	offs := kadm.Offsets{}
	ends.Each(func(o kadm.ListedOffset) {
		offs.Add(kadm.Offset{Topic: o.Topic, Partition: o.Partition, At: o.Offset, LeaderEpoch: -1})
	})
	resp, err := r.b.admin.CommitOffsets(ctx, r.b.group, offs)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Logf("moved the group's Kafka commit to the end of orders (%v), ahead of the offsets in PostgreSQL", r.b.committed("test.orders")["orders"])
}

// expected is what total records should leave behind.
func (r *crashRun) expected(total int) (good, pills int) {
	for i := range total {
		if r.plan.wl.poison(i) {
			pills++
		} else {
			good++
		}
	}
	return good, pills
}

// waitDrained waits until every record of 0..total-1 arrived and the source
// offsets are committed (in PostgreSQL, with offsets there); it fails when
// nothing moves for stallWithin, or after drainWithin.
func (r *crashRun) waitDrained(total int) {
	r.t.Helper()
	good, pills := r.expected(total)
	start := time.Now()
	last, lastChange := -1, time.Now()
	for {
		r.supervise()
		var arrived, pillsIn int
		committed := int(sumCommitted(r.b.committed("test.orders"), "orders"))
		switch r.plan.g {
		case kafkaExactlyOnce:
			arrived, pillsIn = good, pills // read once at the end: the topics are transactional
		case postgresExactlyOnce:
			committed = int(r.storedOffsets())
			fallthrough
		default:
			arrived, pillsIn = r.db.keptKeys(), len(poisonInDLQ(r.b))
		}
		if arrived >= good && pillsIn >= pills && committed == total {
			r.t.Logf("drained %d records in %v", total, time.Since(start).Round(time.Millisecond))
			return
		}
		if progress := arrived + pillsIn + committed; progress != last {
			last, lastChange = progress, time.Now()
		}
		if time.Since(lastChange) > stallWithin || time.Since(start) > drainWithin {
			rep := r.report(total)
			r.dump("the drain stalled: %d of %d good records arrived, %d of %d pills dead-lettered, %d of %d source offsets committed, nothing moved for %v\nmissing: %s\nmissing pills: %s",
				arrived, good, pillsIn, pills, committed, total, time.Since(lastChange).Round(time.Second), keysOf(rep.missing, 20), keysOf(rep.missingPills, 20))
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// storedOffsets sums the source topic's offsets stored in PostgreSQL.
func (r *crashRun) storedOffsets() int64 {
	r.t.Helper()
	var n int64
	if err := r.db.conn.QueryRow(context.Background(), `SELECT coalesce(sum(next_offset), 0) FROM sluice_offsets
		WHERE consumer_group = $1 AND topic = $2`, r.b.group, r.b.name("orders")).Scan(&n); err != nil {
		return -1 // not created yet
	}
	return n
}

// report counts what the sink saw and kept, per record.
func (r *crashRun) report(total int) crashReport {
	r.t.Helper()
	wl := r.plan.wl
	rep := crashReport{g: r.plan.g, kills: r.kills, records: total, workarounds: len(r.workarounds), selfExits: r.selfExits, took: time.Since(r.begin)}
	var counts sinkCounts
	dlq := map[string]int{}
	if r.plan.g == kafkaExactlyOnce {
		counts = kafkaSinkCounts(r.b, recordID)
		for id, n := range counts.kept {
			if strings.HasPrefix(id, "poison-") {
				dlq[id] = n
			}
		}
	} else {
		counts = r.db.counts()
		for _, rec := range r.b.readAll("orders.dlq") {
			dlq[string(rec.Value)]++
		}
	}
	for _, n := range dlq {
		rep.dlqCopies += n
	}
	if r.plan.keys > 0 && r.db != nil {
		rep.order = r.checkKeyOrder()
	}
	for i := range total {
		if wl.poison(i) {
			rep.pills++
			id := fmt.Sprintf("poison-%d", i)
			if dlq[id] > 0 {
				rep.pillsInDLQ++
			} else {
				rep.missingPills = append(rep.missingPills, id)
			}
			if r.plan.g == kafkaExactlyOnce && dlq[id] > 1 {
				rep.duplicates = append(rep.duplicates, id)
			}
			continue
		}
		rep.good++
		if wl.flaky(i) {
			rep.flaky++
		}
		id := fmt.Sprintf("r-%d", i)
		rep.saw += counts.saw[id]
		rep.redeliveries += max(0, counts.saw[id]-1)
		switch n := counts.kept[id]; {
		case n == 0:
			rep.missing = append(rep.missing, id)
		case n > 1:
			rep.duplicates = append(rep.duplicates, fmt.Sprintf("%s (%d times)", id, n))
		}
	}
	return rep
}

// checkKeyOrder walks the delivery log's effects in insertion order and
// checks, per Kafka key (key-<n mod keys>), that its records' first effects
// have increasing n: a key's records are in one partition in the order of n,
// and ordering Key hands a key's next record to the sink only when its
// previous one is done, so a redelivery after a crash repeats a key's records
// in order too, and its copies take no effect. A later effect of a record
// (a duplicate) is reported apart.
//
// Records that went through a retry topic are left out: the flaky ones, and
// the records that shared a failed statement with one (a batch fails as a
// whole). They legitimately arrive after later records of their key, which
// don't wait for them (docs/worker.md, "Ordering and concurrency").
func (r *crashRun) checkKeyOrder() *keyOrder {
	r.t.Helper()
	o := &keyOrder{ordering: r.plan.ordering, maxInFlight: r.plan.maxInFlight}
	retried := map[int64]bool{}
	for _, topic := range []string{"orders.retry.1", "orders.retry.2", "orders.retry.3"} {
		for _, rec := range r.b.readAll(topic) {
			var v struct {
				N *int64 `json:"n"`
			}
			if json.Unmarshal(rec.Value, &v) == nil && v.N != nil {
				retried[*v.N] = true
			}
		}
	}
	o.retried = len(retried)
	latest := map[int64]effect{} // per key: its record with the highest n so far
	seen := map[int64]bool{}     // records with a first effect
	bad := map[int64]bool{}
	for _, e := range r.db.effects() {
		if seen[e.n] || retried[e.n] {
			continue
		}
		seen[e.n] = true
		o.checked++
		key := e.n % int64(r.plan.keys)
		l, ok := latest[key]
		if ok && e.n < l.n {
			o.violations = append(o.violations, fmt.Sprintf("key-%d: r-%d took effect (log row %d, by %s) after r-%d (row %d, by %s)",
				key, e.n, e.seq, e.app, l.n, l.seq, l.app))
			bad[key] = true
			continue
		}
		latest[key] = e
	}
	o.keys, o.badKeys = len(latest), len(bad)
	return o
}

// recordID is the id of an output or dead-letter record of the kafka sink:
// "r-<i>" from the JSON value, or the pill itself ("poison-<i>").
func recordID(value []byte) string {
	v := string(value)
	if rest, ok := strings.CutPrefix(v, `{"id":"`); ok {
		if id, _, ok := strings.Cut(rest, `"`); ok {
			return id
		}
	}
	return v
}

// check fails the run for what the guarantee does not allow.
func (r *crashRun) check(rep crashReport) {
	r.t.Helper()
	if n := len(rep.kills); n > 0 && rep.inFlight()*5 < n*4 {
		r.t.Errorf("only %d of %d kills landed while records were in flight (want at least 80%%): the harness did not crash the workers while they worked", rep.inFlight(), n)
	}
	if len(rep.missing) > 0 {
		r.t.Errorf("%d records never took effect in the sink: %s", len(rep.missing), keysOf(rep.missing, 20))
	}
	if len(rep.duplicates) > 0 {
		r.t.Errorf("%d records took effect more than once: %s", len(rep.duplicates), keysOf(rep.duplicates, 20))
	}
	if len(rep.missingPills) > 0 {
		r.t.Errorf("%d poison pills are not in the dead-letter topic: %s", len(rep.missingPills), keysOf(rep.missingPills, 20))
	}
	if o := rep.order; o != nil {
		switch {
		case len(o.violations) > 0:
			r.t.Errorf("ordering %s: %d records in %d keys took effect after a later record of their key (earliest first): %s",
				o.ordering, len(o.violations), o.badKeys, keysOf(o.violations, 20))
		case o.checked == 0:
			r.t.Errorf("ordering %s: no first effect to check the keys' order with", o.ordering)
		}
	}
	switch r.plan.g {
	case postgresAtLeastOnce:
		// A commit dropped after the sink acknowledged leaves records that
		// the next owner delivers again: the delivery log must show them.
		for _, k := range rep.kills {
			if k.point == "after-sink-ack" && k.inFlight && rep.redeliveries == 0 {
				r.t.Errorf("a commit was dropped after the sink acknowledged, yet the sink saw no record twice: the delivery log does not count redeliveries")
				break
			}
		}
		r.checkTable()
	case postgresExactlyOnce:
		r.checkTable()
		var pending int
		if err := r.db.conn.QueryRow(context.Background(), "SELECT count(*) FROM sluice_retries WHERE NOT done").Scan(&pending); err != nil {
			r.t.Fatal(err)
		}
		if pending != 0 {
			r.t.Errorf("%d retry markers not done, want 0", pending)
		}
	}
}

// checkTable compares the sink's table with the delivery log's effects.
func (r *crashRun) checkTable() {
	r.t.Helper()
	counts, rows := r.db.counts(), r.db.rows()
	var disagree []string
	for id, n := range rows {
		if counts.kept[id] != n {
			disagree = append(disagree, fmt.Sprintf("%s: %d rows, %d effects logged", id, n, counts.kept[id]))
		}
	}
	if len(disagree) > 0 {
		r.t.Errorf("the table and the delivery log disagree: %s", keysOf(disagree, 20))
	}
}
