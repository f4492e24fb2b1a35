package sink_test

import (
	"context"
	"io"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/internal/benchvalues"
	"github.com/sluice-dev/sluice/worker/sink"
)

// benchRecords is a batch of the throughput benchmark's records: values of a
// kind, numeric keys, the default idempotency key, timestamps in milliseconds
// as Kafka's are (ten records a millisecond).
func benchRecords(kind string, batch int) []*sink.Record {
	values := benchvalues.Make(kind, batch)
	now := time.Now().UnixMilli()
	recs := make([]*sink.Record, batch)
	for i := range recs {
		r := &kgo.Record{Topic: "orders", Partition: 3, Offset: int64(1_000_000 + i), Key: []byte(strconv.Itoa(i)), Value: values[i], Timestamp: time.UnixMilli(now + int64(i/10))}
		recs[i] = &sink.Record{Rec: r, OriginalTimestamp: r.Timestamp, Origin: sink.Origin{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}}
	}
	return recs
}

// BenchmarkLogSinkJSON and BenchmarkLogSinkText format batches of 500 records
// of each value kind; ns/record is the sink's elapsed time per record and
// cpu-ns/record the process's CPU time per record. allocs/op stays 1 per batch
// (the []error Write returns): the line buffer is reused, and nothing is
// allocated per record.
//
//	go test ./worker/sink -run '^$' -bench LogSink -benchmem
func BenchmarkLogSinkJSON(b *testing.B) { benchmarkLogSink(b, "JSON") }

func BenchmarkLogSinkText(b *testing.B) { benchmarkLogSink(b, "Text") }

func benchmarkLogSink(b *testing.B, format string) {
	const batch = 500
	for _, kind := range benchvalues.Kinds {
		b.Run(kind, func(b *testing.B) {
			recs := benchRecords(kind, batch)
			l := sink.NewLog(io.Discard, format)
			b.ReportAllocs()
			cpu := processCPU(b)
			for b.Loop() {
				l.Write(context.Background(), recs)
			}
			records := float64(b.N * batch)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/records, "ns/record")
			b.ReportMetric(float64((processCPU(b)-cpu).Nanoseconds())/records, "cpu-ns/record")
		})
	}
}

// processCPU is the CPU time (user and system) the test process used so far.
// On a loaded machine it varies less than the elapsed time: time spent waiting
// for a core is not counted.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
