package worker

import (
	"encoding/binary"
	"errors"
	"strconv"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// requests is the crash harness's hand on kfake's request loop: it watches
// the requests the workers send (which transactions are open) and, when a
// kill point is armed, gives the first matching request to the point's trap,
// which kills its sender before kfake answers.
//
// Control functions run on kfake's one goroutine, in arrival order; a trap
// that blocks blocks the whole cluster, so a trap only kills (a syscall) and
// waits for the process to be gone (milliseconds). kfake's SleepControl would
// let a request wait without blocking the others, but it races under -race.
type requests struct {
	c *kfake.Cluster
	// topics names topic IDs (Produce v13 names topics by ID).
	topics map[[16]byte]string

	mu    sync.Mutex
	traps map[int16]*trap
	// open is, per transactional ID, whether its current transaction has
	// produced records that are not committed yet.
	open map[string]bool
}

// trap handles one request and gives its verdict.
type trap struct {
	fn func(req kmsg.Request) verdict
}

// verdict is what a trap does with a request: like a kfake control function,
// it answers the request itself (handled), or closes the connection (handled
// with an error), or lets kfake answer (not handled); and it says whether it
// fired (a fired trap is disarmed).
type verdict struct {
	resp    kmsg.Response
	err     error
	handled bool
	fired   bool
}

var (
	ignore     = verdict{}                                           // not the request the trap waits for
	dropped    = verdict{err: errKilled, handled: true, fired: true} // fired: the request never takes effect
	letThrough = verdict{fired: true}                                // fired: kfake handles the request
)

// errKilled closes the connection of a request whose sender the harness
// killed: the request never takes effect.
var errKilled = errors.New("crash harness: the sender was killed; the request is dropped")

// watchedKeys are the requests the harness can trap.
var watchedKeys = []kmsg.Key{kmsg.Produce, kmsg.OffsetCommit, kmsg.JoinGroup, kmsg.EndTxn}

func newRequests(c *kfake.Cluster, topics ...string) *requests {
	q := &requests{c: c, topics: map[[16]byte]string{}, traps: map[int16]*trap{}, open: map[string]bool{}}
	for _, t := range topics {
		if info := c.TopicInfo(t); info != nil {
			q.topics[info.TopicID] = t
		}
	}
	for _, k := range watchedKeys {
		c.ControlKey(int16(k), q.handle)
	}
	return q
}

func (q *requests) handle(req kmsg.Request) (kmsg.Response, error, bool) { //nolint:revive // kfake's control signature
	q.observe(req)
	q.mu.Lock()
	tr := q.traps[req.Key()]
	q.mu.Unlock()
	if tr == nil {
		return nil, nil, false
	}
	v := tr.fn(req)
	if v.fired {
		q.disarm(tr)
	}
	if v.handled {
		q.c.KeepControl() // the dispatcher stays for the next request
	}
	return v.resp, v.err, v.handled
}

func (q *requests) observe(req kmsg.Request) {
	switch req := req.(type) {
	case *kmsg.ProduceRequest:
		if req.TransactionID != nil {
			q.mu.Lock()
			q.open[*req.TransactionID] = true
			q.mu.Unlock()
		}
	case *kmsg.EndTxnRequest:
		q.mu.Lock()
		q.open[req.TransactionalID] = false
		q.mu.Unlock()
	}
}

// txnOpen reports whether the transaction of txnID has uncommitted records.
func (q *requests) txnOpen(txnID string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.open[txnID]
}

// arm sets tr on every key; a request of any of them may fire it.
func (q *requests) arm(tr *trap, keys ...kmsg.Key) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, k := range keys {
		q.traps[int16(k)] = tr
	}
}

func (q *requests) disarm(tr *trap) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for k, t := range q.traps {
		if t == tr {
			delete(q.traps, k)
		}
	}
}

// topicName is a produce request topic's name.
func (q *requests) topicName(t kmsg.ProduceRequestTopic) string { return q.nameOf(t.Topic, t.TopicID) }

// nameOf is a topic's name in a request that names it or (newer versions)
// gives its ID.
func (q *requests) nameOf(name string, id [16]byte) string {
	if name != "" {
		return name
	}
	return q.topics[id]
}

// parkedCopy is a record a worker writes to a retry or dead-letter topic, as
// its Sluice headers describe it.
type parkedCopy struct {
	topic     string // where it goes
	origin    string // the source topic
	partition int32  // the source partition (copies keep the key, so the partition too)
	offset    int64  // the source offset
	attempt   int    // failed attempts, this one included
}

// copiesIn decodes the parked copies in a produce request to the topics
// isCopyTopic accepts.
func (q *requests) copiesIn(req *kmsg.ProduceRequest, isCopyTopic func(string) bool) []parkedCopy {
	var out []parkedCopy
	for _, t := range req.Topics {
		topic := q.topicName(t)
		if !isCopyTopic(topic) {
			continue
		}
		for _, p := range t.Partitions {
			for _, rec := range batchRecords(p.Records) {
				c := parkedCopy{topic: topic}
				for _, h := range rec.Headers {
					switch h.Key {
					case HeaderOriginalTopic:
						c.origin = string(h.Value)
					case HeaderOriginalPartition:
						n, _ := strconv.ParseInt(string(h.Value), 10, 32)
						c.partition = int32(n)
					case HeaderOriginalOffset:
						c.offset, _ = strconv.ParseInt(string(h.Value), 10, 64)
					case HeaderAttempt:
						c.attempt, _ = strconv.Atoi(string(h.Value))
					}
				}
				if c.origin != "" && c.attempt > 0 {
					out = append(out, c)
				}
			}
		}
	}
	return out
}

// batchRecords decodes the record batches of a produce request partition.
func batchRecords(data []byte) []kmsg.Record {
	var out []kmsg.Record
	for len(data) >= 12 {
		n := int(int32(binary.BigEndian.Uint32(data[8:12]))) + 12 // baseOffset, then length of the rest
		if n < 12 || n > len(data) {
			return out
		}
		var b kmsg.RecordBatch
		if err := b.ReadFrom(data[:n]); err != nil {
			return out
		}
		recs, err := kfake.BatchRecords(b)
		if err != nil {
			return out
		}
		out = append(out, recs...)
		data = data[n:]
	}
	return out
}

// refuseProduce answers a produce request with a non-retriable error for
// every partition in it: the producer fails those records (they were never
// written).
func refuseProduce(req *kmsg.ProduceRequest) *kmsg.ProduceResponse {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	for _, t := range req.Topics {
		rt := kmsg.NewProduceResponseTopic()
		rt.Topic, rt.TopicID = t.Topic, t.TopicID
		for _, p := range t.Partitions {
			rp := kmsg.NewProduceResponseTopicPartition()
			rp.Partition = p.Partition
			rp.ErrorCode = kerr.InvalidRecord.Code
			rp.BaseOffset = -1
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}
