package replay

import (
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/worker/failure"
)

// TargetKind says how a copy must look to be processed again where it goes.
type TargetKind int

const (
	// ToRetryTopic: the pipeline's first retry topic. The copy is due at once
	// and counts one failed attempt, so it gets the pipeline's remaining retry
	// levels before it is dead-lettered again.
	ToRetryTopic TargetKind = iota
	// ToSource: the source topic. The copy has no attempt or due time: the
	// pipeline treats it as new, with all its retries.
	ToSource
	// ToParked: "<topic>.parked". The copy is kept as it was, for a person.
	ToParked
)

// CopyOf is the record a replay writes for r: the same key, value and
// headers (the failure story stays readable), with the origin headers set
// when r has none (a source record being replayed), so the pipeline's
// idempotency key — "<topic>/<partition>/<offset>" of the source record by
// default — is the same as the first time and an idempotent sink sees no
// duplicate effect. Copies to the pipeline count one more redrive and say
// which replay sent them.
func CopyOf(r *kgo.Record, topic string, kind TargetKind, by string, now time.Time) *kgo.Record {
	headers := make([]kgo.RecordHeader, 0, len(r.Headers)+8)
	hasOrigin := false
	for _, h := range r.Headers {
		switch h.Key {
		case failure.HeaderOriginalTopic:
			hasOrigin = true
		case failure.HeaderRedriveCount, failure.HeaderRedrivenBy:
			if kind != ToParked {
				continue // rewritten below
			}
		case failure.HeaderAttempt, failure.HeaderDueAt:
			if kind != ToParked {
				continue // rewritten below (retry topic) or dropped (source)
			}
		}
		headers = append(headers, h)
	}
	add := func(k, v string) { headers = append(headers, kgo.RecordHeader{Key: k, Value: []byte(v)}) }
	if !hasOrigin {
		add(failure.HeaderOriginalTopic, r.Topic)
		add(failure.HeaderOriginalPartition, strconv.FormatInt(int64(r.Partition), 10))
		add(failure.HeaderOriginalOffset, strconv.FormatInt(r.Offset, 10))
		add(failure.HeaderOriginalTimestamp, r.Timestamp.UTC().Format(time.RFC3339Nano))
	}
	if kind != ToParked {
		add(failure.HeaderRedriveCount, strconv.Itoa(RedriveCount(r)+1))
		add(failure.HeaderRedrivenBy, by)
	}
	if kind == ToRetryTopic {
		add(failure.HeaderAttempt, "1")
		add(failure.HeaderDueAt, now.UTC().Format(time.RFC3339Nano))
	}
	return &kgo.Record{Topic: topic, Key: r.Key, Value: r.Value, Headers: headers, Timestamp: now}
}
