package kafka

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Record batch attribute bits (the Kafka record batch format v2).
const (
	attrTransactional = 0x10
	attrControl       = 0x20
)

// oldestFetchBytes bounds what one lagging partition may return: enough for a few
// small batches, so that a run of transaction markers can be seen through.
const oldestFetchBytes = 64 << 10

// lagging is a partition whose oldest unconsumed record is wanted.
type lagging struct {
	user  string
	index int // into the observation's Partitions
	from  int64
}

// readOldest reads, for every lagging partition, the record batches at the
// group's position with one read_committed Fetch per partition leader. Two
// things come out of it: the timestamp of the oldest unconsumed record (how far
// behind the group is in seconds), and whether what is left is only
// transaction markers or aborted records, which a consumer skips: a group that
// has consumed all data of a transactional topic keeps End − Committed = 1 (the
// final commit marker) forever, and must not be reported, or scaled, as lagging.
// Failures here only leave Oldest unset; the offsets-based lag stands.
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
				ts, onlyMarkers, ok := firstData(rp, k.from)
				if !ok {
					continue
				}
				for _, l := range wanted[k] {
					p := &out[l.user].Partitions[l.index]
					p.OnlyMarkers = onlyMarkers
					if !onlyMarkers {
						p.Oldest = ts
					}
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

// firstData finds the first batch at or after from that a read_committed
// consumer would deliver. It returns the timestamp of that batch's first record
// at or after from; or
// onlyMarkers when every batch up to the high watermark is a control batch or
// part of an aborted transaction; ok is false when the answer can't be told
// (nothing returned, or the bytes ran out before the high watermark).
func firstData(rp kmsg.FetchResponseTopicPartition, from int64) (ts time.Time, onlyMarkers, ok bool) {
	aborted := map[int64]int64{} // producer ID → first offset of its aborted transaction
	for _, a := range rp.AbortedTransactions {
		if f, seen := aborted[a.ProducerID]; !seen || a.FirstOffset < f {
			aborted[a.ProducerID] = a.FirstOffset
		}
	}
	buf := rp.RecordBatches
	reached := from
	for len(buf) >= 12 {
		var b kmsg.RecordBatch
		n := 12 + int(int32(binary.BigEndian.Uint32(buf[8:12]))) // FirstOffset(8) Length(4) + Length
		if n > len(buf) || n <= 12 {
			break // a partial batch at the end of the response
		}
		if err := b.ReadFrom(buf[:n]); err != nil {
			return time.Time{}, false, false
		}
		raw := buf[:n]
		buf = buf[n:]
		last := b.FirstOffset + int64(b.LastOffsetDelta)
		if last < from {
			continue
		}
		reached = last + 1
		if b.Attributes&attrControl != 0 {
			continue
		}
		if b.Attributes&attrTransactional != 0 {
			if first, isAborted := aborted[b.ProducerID]; isAborted && first <= b.FirstOffset {
				continue
			}
		}
		if b.FirstOffset < from {
			// The group's position is inside this batch: the batch's first
			// timestamp belongs to a record it has already consumed.
			return recordTimestampAt(rp.Partition, raw, from, time.UnixMilli(b.FirstTimestamp)), false, true
		}
		return time.UnixMilli(b.FirstTimestamp), false, true
	}
	end := rp.HighWatermark
	if rp.LastStableOffset >= 0 && rp.LastStableOffset < end {
		end = rp.LastStableOffset
	}
	if reached >= end && reached > from {
		return time.Time{}, true, true
	}
	return time.Time{}, false, false
}

// recordTimestampAt decodes one record batch (decompressing it) and returns the
// timestamp of its first record at or after offset from; fallback when it
// can't be decoded.
func recordTimestampAt(partition int32, batch []byte, from int64, fallback time.Time) time.Time {
	rp := kmsg.NewFetchResponseTopicPartition()
	rp.Partition = partition
	rp.HighWatermark = math.MaxInt64
	rp.LastStableOffset = -1
	rp.RecordBatches = batch
	fp, _ := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{Offset: from, Partition: partition}, &rp, kgo.DefaultDecompressor(), nil)
	for _, r := range fp.Records {
		if r.Offset >= from {
			return r.Timestamp
		}
	}
	return fallback
}

func isUnknownTopic(err error) bool {
	return errors.Is(err, kerr.UnknownTopicOrPartition) || errors.Is(err, kerr.UnknownTopicID)
}
