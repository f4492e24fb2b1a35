package worker

import "time"

// A record that failed at the sink is finished only when the broker has
// acknowledged its copy in a retry topic or the dead-letter topic; until then
// it may still come back from its partition (the copy failed, or the worker
// died with it on its way), and if the records after it in its lane (its
// partition in Partition mode, its key in Key mode) had gone to the sink in
// the meantime, it would then take effect after them. So a lane waits for its
// failed records' copies, milliseconds of a produce, not for their retries,
// and when a copy fails the lane stops for the round: its records stay
// unfinished and are read again in order after the rewind.

// copyInFlight is one failed record's copy on its way to the broker.
type copyInFlight struct {
	done chan struct{}
	ok   bool // the broker acknowledged it; read after done is closed
}

func newCopyInFlight() *copyInFlight { return &copyInFlight{done: make(chan struct{})} }

// answered records the broker's answer; the producer calls it once.
func (c *copyInFlight) answered(ok bool) {
	c.ok = ok
	close(c.done)
}

// answeredOK reports whether the broker has acknowledged the copy by now.
func (c *copyInFlight) answeredOK() bool {
	select {
	case <-c.done:
		return c.ok
	default:
		return false
	}
}

// parkedCopies are the copies one sink call parked, with the index in the
// call's chunk of each record they are of.
type parkedCopies []parkedCopyOf

type parkedCopyOf struct {
	chunkIndex int
	inFlight   *copyInFlight
}

func (p *parkedCopies) add(chunkIndex int, c *copyInFlight) {
	if c != nil {
		*p = append(*p, parkedCopyOf{chunkIndex, c})
	}
}

// wait blocks until the broker answered every copy, or until patience ran
// out, and calls failed with the chunk index of each record whose copy it
// refused or did not answer in time. The producer answers every copy within
// its delivery timeout unless it is wedged; patience bounds the wait for that
// case, after which the round ends and settle replaces the producer.
func (p parkedCopies) wait(patience time.Duration, failed func(chunkIndex int)) {
	if len(p) == 0 {
		return
	}
	timeout := time.NewTimer(patience)
	defer timeout.Stop()
	expired := false
	for _, c := range p {
		if !expired {
			select {
			case <-c.inFlight.done:
			case <-timeout.C:
				expired = true
			}
		}
		if expired || !c.inFlight.answeredOK() {
			failed(c.chunkIndex)
		}
	}
}

// allAcknowledged waits like wait and reports whether every copy was acknowledged.
func (p parkedCopies) allAcknowledged(patience time.Duration) bool {
	ok := true
	p.wait(patience, func(int) { ok = false })
	return ok
}

// refused waits like wait and returns, for a chunk of n records, which ones'
// copies were refused or not answered in time (nil: none).
func (p parkedCopies) refused(patience time.Duration, n int) []bool {
	var out []bool
	p.wait(patience, func(j int) {
		if out == nil {
			out = make([]bool, n)
		}
		out[j] = true
	})
	return out
}
