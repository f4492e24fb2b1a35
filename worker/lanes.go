package worker

// lanes is one poll round's records in Key or Unordered mode, sorted into
// lanes: the records of a lane reach the sink one at a time, in offset order;
// records of different lanes may be at the sink at once. In Key mode a lane is
// one ordering key of one partition (keys are per partition: Kafka puts a key
// in one partition, and a retry topic's copy of a record is in another
// partition, which may overtake it); in Unordered mode every record is a lane
// of its own.
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
}

// reset prepares for a round of n messages.
func (l *lanes) reset(n int) {
	if cap(l.next) < n {
		l.next = make([]int32, n)
	}
	l.next = l.next[:n]
	l.lanes, l.ready, l.readyHead = l.lanes[:0], l.ready[:0], 0
}

// newLane opens a lane; add puts messages in it.
func (l *lanes) newLane() int32 {
	l.lanes = append(l.lanes, lane{head: -1, tail: -1})
	return int32(len(l.lanes) - 1)
}

// add appends message m (an index into the round's messages) to lane id.
// Messages are added in offset order per partition.
func (l *lanes) add(id, m int32) {
	l.next[m] = -1
	ln := &l.lanes[id]
	if ln.head < 0 {
		ln.head, ln.tail = m, m
		l.ready = append(l.ready, id)
		return
	}
	l.next[ln.tail] = m
	ln.tail = m
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
	l.lanes[id] = lane{head: -1, tail: -1}
}

// left calls f with every message not yet taken.
func (l *lanes) left(f func(m int32)) {
	for _, ln := range l.lanes {
		for m := ln.head; m >= 0; m = l.next[m] {
			f(m)
		}
	}
}
