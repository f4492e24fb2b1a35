package demo

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/worker"
)

// topicReader follows the dead-letter and retry topics of every pipeline from
// their start, outside any consumer group: it is how the summary knows what
// was parked, and the view counts dead letters by error class.
type topicReader struct {
	client   *kgo.Client
	pipeline map[string]string // topic → pipeline
	dlq      map[string]bool   // dead-letter topics

	mu     sync.Mutex
	dead   []parkedRecord
	copies []parkedRecord
	next   map[string]map[int32]int64 // position: next offset to read
}

// parkedRecord is a record in a retry or dead-letter topic.
type parkedRecord struct {
	Pipeline  string
	ID        string // the record key: the id the generator gave it
	Topic     string
	Partition int32
	Offset    int64
	Class     string
	Message   string
}

func newTopicReader(brokers []string, pipelineTopics map[string][]string, deadLetter map[string]string) (*topicReader, error) {
	r := &topicReader{pipeline: map[string]string{}, dlq: map[string]bool{}, next: map[string]map[int32]int64{}}
	var topics []string
	for p, ts := range pipelineTopics {
		for _, t := range ts {
			r.pipeline[t] = p
			topics = append(topics, t)
		}
	}
	for _, t := range deadLetter {
		r.dlq[t] = true
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.MetadataMinAge(250*time.Millisecond), kgo.FetchMaxWait(250*time.Millisecond))
	if err != nil {
		return nil, err
	}
	r.client = cl
	return r, nil
}

func (r *topicReader) run(ctx context.Context) {
	for {
		fs := r.client.PollFetches(ctx)
		if ctx.Err() != nil || fs.IsClientClosed() {
			return
		}
		r.mu.Lock()
		fs.EachRecord(func(rec *kgo.Record) {
			p := parkedRecord{Pipeline: r.pipeline[rec.Topic], ID: string(rec.Key), Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset}
			for _, h := range rec.Headers {
				switch h.Key {
				case worker.HeaderErrorClass:
					p.Class = string(h.Value)
				case worker.HeaderErrorMessage:
					p.Message = string(h.Value)
				}
			}
			if r.dlq[rec.Topic] {
				r.dead = append(r.dead, p)
			} else {
				r.copies = append(r.copies, p)
			}
			if r.next[rec.Topic] == nil {
				r.next[rec.Topic] = map[int32]int64{}
			}
			r.next[rec.Topic][rec.Partition] = rec.Offset + 1
		})
		r.mu.Unlock()
	}
}

// caughtUp waits until everything written to the topics so far has been read.
func (r *topicReader) caughtUp(ctx context.Context, adm *kadm.Client) error {
	topics := make([]string, 0, len(r.pipeline))
	for t := range r.pipeline {
		topics = append(topics, t)
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return err
	}
	for {
		behind := ""
		r.mu.Lock()
		ends.Each(func(o kadm.ListedOffset) {
			if o.Err == nil && o.Offset > 0 && r.next[o.Topic][o.Partition] < o.Offset {
				behind = fmt.Sprintf("%s[%d] read to %d of %d", o.Topic, o.Partition, r.next[o.Topic][o.Partition], o.Offset)
			}
		})
		r.mu.Unlock()
		if behind == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("reading the retry and dead-letter topics: %s: %w", behind, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// parked returns what was read so far of pipeline: dead letters and retry copies.
func (r *topicReader) parked(pipeline string) (dead, copies []parkedRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.dead {
		if p.Pipeline == pipeline {
			dead = append(dead, p)
		}
	}
	for _, p := range r.copies {
		if p.Pipeline == pipeline {
			copies = append(copies, p)
		}
	}
	return dead, copies
}

// deadLetterCounts counts pipeline's dead letters by reason.
func (r *topicReader) deadLetterCounts(pipeline string) map[string]int {
	dead, _ := r.parked(pipeline)
	out := map[string]int{}
	for _, d := range dead {
		out[dlqReason(d.Class, d.Message)]++
	}
	return out
}

var httpStatus = regexp.MustCompile(`HTTP (\d{3})`)

// dlqReason names why a record was dead-lettered, from its error class and
// message headers.
func dlqReason(class, msg string) string {
	switch {
	case strings.Contains(msg, "idempotency key"):
		return class + ": no idempotency key"
	case class == "transient":
		if m := httpStatus.FindStringSubmatch(msg); m != nil {
			return "transient: HTTP " + m[1] + ", retries exhausted"
		}
		return "transient: retries exhausted"
	}
	if m := httpStatus.FindStringSubmatch(msg); m != nil {
		return class + ": HTTP " + m[1] + " (bad request)"
	}
	if strings.Contains(msg, "SQLSTATE 22") {
		return class + ": invalid value for the table"
	}
	return class + ": " + shorten(msg, 40)
}

func (r *topicReader) Close() { r.client.Close() }
