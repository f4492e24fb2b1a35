package sink_test

import (
	"context"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/worker/sink"
)

// BenchmarkLogSinkJSON formats the throughput benchmark's records (100-byte
// values, numeric keys, the default idempotency key) in batches of 500.
//
//	go test ./worker/sink -run '^$' -bench LogSink -benchmem
func BenchmarkLogSinkJSON(b *testing.B) {
	const batch = 500
	value := []byte(strings.Repeat("x", 100))
	now := time.Now()
	recs := make([]*sink.Record, batch)
	for i := range recs {
		r := &kgo.Record{Topic: "orders", Partition: 3, Offset: int64(1_000_000 + i), Key: []byte(strconv.Itoa(i)), Value: value, Timestamp: now.Add(time.Duration(i) * time.Microsecond)}
		recs[i] = &sink.Record{Rec: r, OriginalTimestamp: r.Timestamp, Origin: sink.Origin{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}}
	}
	l := sink.NewLog(io.Discard, "JSON")
	b.ReportAllocs()
	for b.Loop() {
		l.Write(context.Background(), recs)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/record")
}
