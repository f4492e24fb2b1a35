// Package replay sends records of a pipeline's dead-letter, retry or source
// topic back through the pipeline (a StreamReplay): it fixes what to read
// (snapshot), decides per record what to do (select), counts (dry run) and
// copies each selected record exactly once (redrive), resuming after a crash
// from the position it committed with its last copies.
package replay

import (
	"bytes"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/worker/failure"
)

// Action is what a replay does with one record.
type Action int

const (
	// Skip leaves the record alone: it does not match the selection.
	Skip Action = iota
	// Copy sends the record to the target.
	Copy
	// Park sends the record to the parked topic: it was redriven MaxRedrives
	// times already.
	Park
)

// Selection is a replay's filter on records. The zero value selects every
// data record. Offset ranges are per partition and are applied by the
// snapshot (start and end offsets), not here.
type Selection struct {
	// Since and Until bound the record timestamp: Since ≤ t < Until; a zero
	// value is open.
	Since, Until time.Time
	// Classes, when non-empty, are the error classes (sluice-error-class) selected.
	Classes []string
	// MessageContains, when non-empty, must appear in sluice-error-message.
	MessageContains string
	// OriginalPartition, when non-nil, must equal sluice-original-partition.
	OriginalPartition *int32
	// OriginalFrom and OriginalTo, when non-nil, bound sluice-original-offset
	// (both included).
	OriginalFrom, OriginalTo *int64
	// MaxRedrives is how many redrives a record may have had and still be
	// copied; one that had this many is parked. 0 never parks.
	MaxRedrives int
}

// Decide is what the replay does with r. It is a pure function of the record
// and the selection, so a resumed replay decides the same way, and it can
// recount what an earlier run of the same replay copied.
func (s Selection) Decide(r *kgo.Record) Action {
	if r.Attrs.IsControl() {
		return Skip
	}
	if !s.Since.IsZero() && r.Timestamp.Before(s.Since) {
		return Skip
	}
	if !s.Until.IsZero() && !r.Timestamp.Before(s.Until) {
		return Skip
	}
	if s.needsHeaders() {
		h := headersOf(r)
		if len(s.Classes) > 0 && !containsString(s.Classes, h.class) {
			return Skip
		}
		if s.MessageContains != "" && !bytes.Contains(h.message, []byte(s.MessageContains)) {
			return Skip
		}
		if s.OriginalPartition != nil && (!h.hasPartition || h.partition != *s.OriginalPartition) {
			return Skip
		}
		if (s.OriginalFrom != nil || s.OriginalTo != nil) && !h.hasOffset {
			return Skip
		}
		if s.OriginalFrom != nil && h.offset < *s.OriginalFrom {
			return Skip
		}
		if s.OriginalTo != nil && h.offset > *s.OriginalTo {
			return Skip
		}
	}
	if s.MaxRedrives > 0 && RedriveCount(r) >= s.MaxRedrives {
		return Park
	}
	return Copy
}

func (s Selection) needsHeaders() bool {
	return len(s.Classes) > 0 || s.MessageContains != "" || s.OriginalPartition != nil || s.OriginalFrom != nil || s.OriginalTo != nil
}

// failureHeaders are the Sluice headers a selection looks at.
type failureHeaders struct {
	class        string
	message      []byte
	partition    int32
	hasPartition bool
	offset       int64
	hasOffset    bool
}

func headersOf(r *kgo.Record) failureHeaders {
	var h failureHeaders
	for _, kv := range r.Headers {
		switch kv.Key {
		case failure.HeaderErrorClass:
			h.class = string(kv.Value)
		case failure.HeaderErrorMessage:
			h.message = kv.Value
		case failure.HeaderOriginalPartition:
			if p, err := strconv.ParseInt(string(kv.Value), 10, 32); err == nil {
				h.partition, h.hasPartition = int32(p), true
			}
		case failure.HeaderOriginalOffset:
			if o, err := strconv.ParseInt(string(kv.Value), 10, 64); err == nil {
				h.offset, h.hasOffset = o, true
			}
		}
	}
	return h
}

// ClassOf is the record's error class header, "" when it has none.
func ClassOf(r *kgo.Record) string {
	return headersOf(r).class
}

// RedriveCount is the record's sluice-redrive-count header; 0 when it has none
// or it does not parse (a record a person wrote by hand is redriven).
func RedriveCount(r *kgo.Record) int {
	for _, kv := range r.Headers {
		if kv.Key == failure.HeaderRedriveCount {
			n, err := strconv.Atoi(string(kv.Value))
			if err != nil || n < 0 {
				return 0
			}
			return n
		}
	}
	return 0
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
