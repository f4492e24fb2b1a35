package worker

import (
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/worker/failure"
)

// Headers Sluice adds to records it writes to retry and dead-letter topics
// (defined in package failure, which the operator's redrive shares).
const (
	HeaderOriginalTopic     = failure.HeaderOriginalTopic
	HeaderOriginalPartition = failure.HeaderOriginalPartition
	HeaderOriginalOffset    = failure.HeaderOriginalOffset
	HeaderOriginalTimestamp = failure.HeaderOriginalTimestamp
	HeaderErrorClass        = failure.HeaderErrorClass
	HeaderErrorMessage      = failure.HeaderErrorMessage
	HeaderAttempt           = failure.HeaderAttempt
	HeaderFirstFailure      = failure.HeaderFirstFailure
	HeaderLastFailure       = failure.HeaderLastFailure
	HeaderDueAt             = failure.HeaderDueAt
)

// MaxErrorMessageBytes bounds the error message header.
const MaxErrorMessageBytes = failure.MaxErrorMessageBytes

// failureInfo is what Sluice's headers say about a record's past.
type failureInfo struct {
	origin       origin
	attempt      int
	firstFailure time.Time
	dueAt        time.Time
}

// origin locates a record in the source topic.
type origin struct {
	topic     string
	partition int32
	offset    int64
	timestamp time.Time
}

func isSluiceHeader(k string) bool {
	switch k {
	case HeaderOriginalTopic, HeaderOriginalPartition, HeaderOriginalOffset, HeaderOriginalTimestamp,
		HeaderErrorClass, HeaderErrorMessage, HeaderAttempt, HeaderFirstFailure, HeaderLastFailure, HeaderDueAt:
		return true
	}
	return false
}

// decodeFailureInfo reads Sluice's headers from a record. A record without them
// is a source record: its origin is itself and it has no failures. Malformed
// Sluice headers are an error (the record goes to the dead-letter topic rather
// than being processed with a wrong identity).
func decodeFailureInfo(r *kgo.Record) (failureInfo, error) {
	info := failureInfo{origin: origin{r.Topic, r.Partition, r.Offset, r.Timestamp}}
	if len(r.Headers) == 0 {
		return info, nil // most source records: nothing to decode
	}
	var sawOrigin bool
	for _, h := range r.Headers {
		v := string(h.Value)
		var err error
		switch h.Key {
		case HeaderOriginalTopic:
			info.origin.topic, sawOrigin = v, true
			if v == "" {
				err = fmt.Errorf("empty")
			}
		case HeaderOriginalPartition:
			var p int64
			p, err = strconv.ParseInt(v, 10, 32)
			info.origin.partition = int32(p)
		case HeaderOriginalOffset:
			info.origin.offset, err = strconv.ParseInt(v, 10, 64)
		case HeaderOriginalTimestamp:
			info.origin.timestamp, err = time.Parse(time.RFC3339Nano, v)
		case HeaderAttempt:
			info.attempt, err = strconv.Atoi(v)
			if err == nil && info.attempt < 0 {
				err = fmt.Errorf("negative")
			}
		case HeaderFirstFailure:
			info.firstFailure, err = time.Parse(time.RFC3339Nano, v)
		case HeaderDueAt:
			info.dueAt, err = time.Parse(time.RFC3339Nano, v)
		}
		if err != nil {
			return failureInfo{}, fmt.Errorf("header %s=%q: %w", h.Key, v, err)
		}
	}
	if !sawOrigin {
		// A source record, or a foreign record without our headers: itself.
		info.origin = origin{r.Topic, r.Partition, r.Offset, r.Timestamp}
	}
	return info, nil
}

// failureInfoOf is what the pipeline knows of a record's past: its Sluice
// headers, decoded, where a record whose headers don't decode gets its own
// coordinates and a poison error (it goes to the dead-letter topic), and a
// foreign record in a retry topic (no attempt header) counts the attempts
// that topic stands for (retryAttempts, 0 for the source topic).
func failureInfoOf(r *kgo.Record, retryAttempts int) (failureInfo, error) {
	info, err := decodeFailureInfo(r)
	if err != nil {
		return failureInfo{origin: origin{r.Topic, r.Partition, r.Offset, r.Timestamp}}, failure.Poison(err)
	}
	if info.attempt == 0 && retryAttempts > 0 {
		info.attempt = retryAttempts
	}
	return info, nil
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// failedCopy builds the record Sluice writes to a retry or dead-letter topic: the
// original key, value and headers, plus Sluice's headers describing the failure.
func failedCopy(r *kgo.Record, info failureInfo, topic string, class string, cause error, now, dueAt time.Time) *kgo.Record {
	msg := cause.Error()
	if len(msg) > MaxErrorMessageBytes {
		msg = msg[:MaxErrorMessageBytes]
	}
	first := info.firstFailure
	if first.IsZero() {
		first = now
	}
	headers := make([]kgo.RecordHeader, 0, len(r.Headers)+10)
	for _, h := range r.Headers {
		if !isSluiceHeader(h.Key) {
			headers = append(headers, h)
		}
	}
	add := func(k, v string) { headers = append(headers, kgo.RecordHeader{Key: k, Value: []byte(v)}) }
	add(HeaderOriginalTopic, info.origin.topic)
	add(HeaderOriginalPartition, strconv.FormatInt(int64(info.origin.partition), 10))
	add(HeaderOriginalOffset, strconv.FormatInt(info.origin.offset, 10))
	add(HeaderOriginalTimestamp, formatTime(info.origin.timestamp))
	add(HeaderErrorClass, class)
	add(HeaderErrorMessage, msg)
	add(HeaderAttempt, strconv.Itoa(info.attempt+1))
	add(HeaderFirstFailure, formatTime(first))
	add(HeaderLastFailure, formatTime(now))
	if !dueAt.IsZero() {
		add(HeaderDueAt, formatTime(dueAt))
	}
	return &kgo.Record{Topic: topic, Key: r.Key, Value: r.Value, Headers: headers, Timestamp: now}
}
