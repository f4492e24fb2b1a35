package kafka

import (
	"context"
	"encoding/binary"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// oldestFetchBytes bounds what one lagging partition may return: enough for a few
// small batches, so that a run of transaction markers and aborted records can
// be seen through. A longer run leaves the answer unknown (the partition
// counts as lagging, its time lag unknown) until the group moves.
const oldestFetchBytes = 64 << 10

// lagging is a partition whose oldest unconsumed record is wanted.
type lagging struct {
	user  string
	index int // into the observation's Partitions
	from  int64
}

// readOldest reads, for every lagging partition, the record batches at the
// group's position with one read_committed Fetch per partition leader, and
// runs franz-go's read_committed processing on them (firstReadable). Two
// things come out of it: the timestamp of the first record a read_committed
// consumer at that position gets (how far behind the group is in seconds), and
// whether it gets none before End because what is left is only transaction
// markers or aborted records: a group that has consumed all data of a
// transactional topic keeps End − Committed ≥ 1 (the final commit marker)
// forever, and must not be reported, or scaled, as lagging. Records of a
// transaction still open count as lag. Failures here only leave Oldest unset;
// the offsets-based lag stands.
func (c *Cluster) readOldest(ctx context.Context, watches map[string]Watch, out map[string]Observation) {
	byTopic := map[string][]lagging{}
	for u, o := range out {
		if o.Err != nil {
			continue
		}
		for i, p := range o.Partitions {
			from := p.Committed
			if from < 0 {
				from = p.Start // measured from the earliest; a Latest group has no lag
			}
			if p.End > from && from >= p.Start {
				t := watches[u].Topic
				byTopic[t] = append(byTopic[t], lagging{user: u, index: i, from: from})
			}
		}
	}
	if len(byTopic) == 0 {
		return
	}
	topics := make([]string, 0, len(byTopic))
	for t := range byTopic {
		topics = append(topics, t)
	}
	meta, err := c.admin.Metadata(ctx, topics...)
	if err != nil {
		return
	}

	// One request per leader, except that a partition lagging for several groups
	// at different offsets needs one request per offset (a Fetch names each
	// partition once).
	type tp struct {
		topic     string
		partition int32
	}
	type key struct {
		tp
		from int64
	}
	type fetch struct {
		leader int32
		req    *kmsg.FetchRequest
		keys   map[tp]key
	}
	var fetches []*fetch
	pick := func(leader int32, at tp) *fetch {
		for _, f := range fetches {
			if _, taken := f.keys[at]; f.leader == leader && !taken {
				return f
			}
		}
		f := &fetch{leader: leader, req: newOldestFetch(), keys: map[tp]key{}}
		fetches = append(fetches, f)
		return f
	}
	wanted := map[key][]lagging{}
	for topic, ls := range byTopic {
		td, ok := meta.Topics[topic]
		if !ok || td.Err != nil {
			continue
		}
		for _, l := range ls {
			at := tp{topic, out[l.user].Partitions[l.index].Partition}
			pd, ok := td.Partitions[at.partition]
			if !ok || pd.Err != nil || pd.Leader < 0 {
				continue
			}
			k := key{at, l.from}
			if _, dup := wanted[k]; !dup {
				f := pick(pd.Leader, at)
				f.keys[at] = k
				addFetchPartition(f.req, topic, td.ID, at.partition, l.from)
			}
			wanted[k] = append(wanted[k], l)
		}
	}

	for _, f := range fetches {
		resp, err := c.client.Broker(int(f.leader)).Request(ctx, f.req)
		if err != nil {
			continue
		}
		names := map[[16]byte]string{}
		for _, t := range f.req.Topics {
			names[t.TopicID] = t.Topic
		}
		for _, rt := range resp.(*kmsg.FetchResponse).Topics {
			topic := rt.Topic
			if topic == "" {
				topic = names[rt.TopicID]
			}
			for _, rp := range rt.Partitions {
				k, ok := f.keys[tp{topic, rp.Partition}]
				if !ok || rp.ErrorCode != 0 {
					continue
				}
				ls := wanted[k]
				// Every watch of a partition has the same End: one ListOffsets.
				ts, onlyMarkers, ok := firstReadable(&rp, k.from, out[ls[0].user].Partitions[ls[0].index].End)
				if !ok {
					continue
				}
				for _, l := range ls {
					p := &out[l.user].Partitions[l.index]
					p.OnlyMarkers = onlyMarkers
					p.Oldest = ts
				}
			}
		}
	}
}

func newOldestFetch() *kmsg.FetchRequest {
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = -1
	req.MaxWaitMillis = 0
	req.MinBytes = 0
	req.MaxBytes = 4 << 20
	req.IsolationLevel = 1 // read_committed: what a transactional consumer sees
	req.SessionID = 0
	req.SessionEpoch = -1 // no fetch session: a one-off read
	return req
}

func addFetchPartition(req *kmsg.FetchRequest, topic string, id [16]byte, partition int32, from int64) {
	p := kmsg.NewFetchRequestTopicPartition()
	p.Partition = partition
	p.FetchOffset = from
	p.PartitionMaxBytes = oldestFetchBytes
	p.CurrentLeaderEpoch = -1
	p.LastFetchedEpoch = -1
	p.LogStartOffset = -1
	for i := range req.Topics {
		if req.Topics[i].Topic == topic {
			req.Topics[i].Partitions = append(req.Topics[i].Partitions, p)
			return
		}
	}
	t := kmsg.NewFetchRequestTopic()
	t.Topic, t.TopicID = topic, id
	t.Partitions = []kmsg.FetchRequestTopicPartition{p}
	req.Topics = append(req.Topics, t)
}

// firstReadable says what a read_committed consumer at offset from gets out
// of rp, one partition of a read_committed Fetch: the timestamp of the first
// record it delivers below end (the sampled high watermark); or onlyMarkers
// when it delivers none there, having passed every control batch and aborted
// transaction up to end. ok is false when rp can't tell: no record below end
// and the consumer's position stops short of end, because the bytes ran out
// or an open transaction holds the last stable offset below end (its records
// count as lag until it is decided, and their time is unknown meanwhile).
//
// The records are those of franz-go's own read_committed processing
// (kgo.ProcessFetchPartition, what a kgo consumer runs on every fetch
// response), so an aborted transaction ends where its abort marker is.
// Processing is sequential, so the first n batches alone yield exactly the
// records the whole response yields from them: the batches are processed in
// prefixes of 1, 2, 4, … until a record shows. A lagging partition usually
// has data in its first batch, and decoding the whole response (up to
// oldestFetchBytes) every poll cost 3–4 times the CPU and 5 times the
// allocations (BenchmarkOldestDecision).
func firstReadable(rp *kmsg.FetchResponseTopicPartition, from, end int64) (ts time.Time, onlyMarkers, ok bool) {
	opts := kgo.ProcessFetchPartitionOpts{Offset: from, Partition: rp.Partition, IsolationLevel: kgo.ReadCommitted()}
	prefix := *rp
	for n := 1; ; n *= 2 {
		var all bool
		prefix.RecordBatches, all = firstBatches(rp.RecordBatches, n)
		fp, next := kgo.ProcessFetchPartition(opts, &prefix, kgo.DefaultDecompressor(), nil)
		if len(fp.Records) > 0 || next >= end || all {
			var first *kgo.Record
			if len(fp.Records) > 0 {
				first = fp.Records[0]
			}
			return readableVerdict(first, next, end)
		}
	}
}

// firstBatches returns the first n whole record batches (or message sets) of
// raw, and whether they are all the whole batches raw holds. Each starts with
// its base offset (8 bytes) and the length of the rest (4 bytes).
func firstBatches(raw []byte, n int) (batches []byte, all bool) {
	at := 0
	for range n {
		if len(raw)-at < 12 {
			return raw[:at], true
		}
		size := 12 + int64(int32(binary.BigEndian.Uint32(raw[at+8:])))
		if size <= 12 || size > int64(len(raw)-at) {
			return raw[:at], true // a partial batch at the end of the response
		}
		at += int(size)
	}
	return raw[:at], at == len(raw)
}

// readableVerdict is firstReadable's decision, given the first record a
// read_committed consumer delivered (nil: none) and the offset it would read
// next.
func readableVerdict(first *kgo.Record, next, end int64) (ts time.Time, onlyMarkers, ok bool) {
	switch {
	case first != nil && first.Offset < end:
		return first.Timestamp, false, true
	case first != nil || next >= end:
		return time.Time{}, true, true // nothing readable below end
	default:
		return time.Time{}, false, false
	}
}

func isUnknownTopic(err error) bool {
	return errors.Is(err, kerr.UnknownTopicOrPartition) || errors.Is(err, kerr.UnknownTopicID)
}
