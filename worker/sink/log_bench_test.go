package sink_test

import (
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/worker/sink"
)

// The value kinds the log sink is benchmarked on (worker/bench_test.go's
// BenchmarkThroughput produces the same kinds):
//
//   - random: 100 random bytes, what a binary payload (Avro, Protobuf,
//     compressed or encrypted data) looks like to the sink: not UTF-8;
//   - json: JSON documents of about 100 bytes whose strings hold quotes,
//     backslashes, newlines, tabs and non-ASCII text (accents, CJK, emoji);
//   - ascii: 100 bytes of plain ASCII text, nothing to escape.
var valueKinds = []string{"random", "json", "ascii"}

// benchValues returns n values of a kind, the same on every call.
func benchValues(kind string, n int) [][]byte {
	rng := rand.New(rand.NewPCG(13, uint64(len(kind))))
	names := []string{"Zoë Ångström", "José Ñúñez", "Søren Kierkegård", "李小龙", "Анна Каренина", `Max "the Hammer" Müller`, "Åsa Öberg"}
	cities := []string{"Zürich", "São Paulo", "Kraków", "東京", "Montréal", `C:\Orders\In`, "Αθήνα"}
	notes := []string{"ring twice\nthen wait", "fragile\t⚠ glass", `say "hi" 😀`, "", "leave at door", "2nd floor\r\nback", "¡gracias!"}
	const text = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;-_/()"
	values := make([][]byte, n)
	for i := range values {
		switch kind {
		case "random":
			v := make([]byte, 100)
			for j := range v {
				v[j] = byte(rng.Uint32())
			}
			values[i] = v
		case "json":
			v, err := json.Marshal(struct {
				ID       int     `json:"id"`
				Customer string  `json:"customer"`
				City     string  `json:"city"`
				Note     string  `json:"note"`
				Total    float64 `json:"total"`
			}{i, names[rng.IntN(len(names))], cities[rng.IntN(len(cities))], notes[rng.IntN(len(notes))], float64(rng.IntN(100_000)) / 100})
			if err != nil {
				panic(err)
			}
			values[i] = v
		case "ascii":
			v := make([]byte, 100)
			for j := range v {
				v[j] = text[rng.IntN(len(text))]
			}
			values[i] = v
		default:
			panic("unknown value kind " + kind)
		}
	}
	return values
}

// benchRecords is a batch of the throughput benchmark's records: values of a
// kind, numeric keys, the default idempotency key, timestamps in milliseconds
// as Kafka's are (ten records a millisecond).
func benchRecords(kind string, batch int) []*sink.Record {
	values := benchValues(kind, batch)
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
	for _, kind := range valueKinds {
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
