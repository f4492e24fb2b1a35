package worker

// lanes is one poll round's records in Key or Unordered mode, sorted into
// lanes: the records of a lane reach the sink one at a time, in offset order;
// records of different lanes may be at the sink at once. In Key mode a lane is
// one ordering key of one partition (keys are per partition: Kafka puts a key
// in one partition, and a retry topic's copy of a record is in another
// partition, which may overtake it); in Unordered mode every record is a lane
// of its own.
//
// A round's refills add records to the lanes it has (a key's lane gets the
// key's later records) and new lanes.
//
// The lanes are linked lists through the round's messages (next), so a round
// costs no allocation per lane beyond its entry in lanes, and ready is the FIFO
// of lanes that are idle and have records left: a lane that just finished a
// record goes to the back, behind lanes whose next records are older, which
// keeps each partition's finished prefix, and with it the commit, moving.
type lanes struct {
	next  []int32 // next[i]: the message after i in its lane, -1 at its end
	lanes []lane
	ready []int32 // ring of lane indexes, read from readyHead
	// readyHead indexes ready's first entry; entries before it are spent.
	readyHead int
}

type lane struct {
	head, tail int32 // message indexes; head -1: nothing left
	busy       bool  // one of its records is at the sink
	stopped    bool  // stop ended it for the round: it takes no more records
}

// reset prepares for a round.
func (l *lanes) reset() {
	l.next = l.next[:0]
	l.lanes, l.ready, l.readyHead = l.lanes[:0], l.ready[:0], 0
}

// grow makes room for the round's messages 0 to n-1.
func (l *lanes) grow(n int32) {
	for int32(len(l.next)) < n {
		l.next = append(l.next, -1)
	}
}

// newLane opens a lane; add puts messages in it.
func (l *lanes) newLane() int32 {
	l.lanes = append(l.lanes, lane{head: -1, tail: -1})
	return int32(len(l.lanes) - 1)
}

// add appends message m (an index into the round's messages) to lane id and
// reports true, or false when the lane was stopped (m stays out of it).
// Messages are added in offset order per partition.
func (l *lanes) add(id, m int32) bool {
	l.next[m] = -1
	ln := &l.lanes[id]
	switch {
	case ln.stopped:
		return false
	case ln.head < 0:
		ln.head, ln.tail = m, m
		if !ln.busy {
			l.ready = append(l.ready, id)
		}
	default:
		l.next[ln.tail] = m
		ln.tail = m
	}
	return true
}

// take appends up to n messages to msgs, each the next of a different idle
// lane, and their lanes to ids (for done), and marks those lanes busy.
func (l *lanes) take(n int, msgs, ids []int32) ([]int32, []int32) {
	for len(msgs) < n && l.readyHead < len(l.ready) {
		id := l.ready[l.readyHead]
		l.readyHead++
		ln := &l.lanes[id]
		msgs = append(msgs, ln.head)
		ids = append(ids, id)
		ln.head = l.next[ln.head]
		ln.busy = true
	}
	if l.readyHead == len(l.ready) {
		l.ready, l.readyHead = l.ready[:0], 0
	}
	return msgs, ids
}

// readyCount is how many lanes are ready: the records that take can hand out
// now.
func (l *lanes) readyCount() int { return len(l.ready) - l.readyHead }

// done ends a lane's turn at the sink: it is idle again and, with records
// left, ready.
func (l *lanes) done(id int32) {
	ln := &l.lanes[id]
	ln.busy = false
	if ln.head >= 0 {
		l.ready = append(l.ready, id)
	}
}

// stop ends a lane for the round: its records not yet taken stay unfinished
// (read again after the rewind), behind the one that could not be handed on.
func (l *lanes) stop(id int32) {
	l.lanes[id] = lane{head: -1, tail: -1, stopped: true}
}

// left calls f with every message not yet taken.
func (l *lanes) left(f func(m int32)) {
	for _, ln := range l.lanes {
		for m := ln.head; m >= 0; m = l.next[m] {
			f(m)
		}
	}
}
