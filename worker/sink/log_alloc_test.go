//go:build !race

// Allocation counts are only meaningful without the race detector, whose
// sync.Pool drops pooled items at random: make test runs this file in a run
// of its own without -race (the Makefile's test target).

package sink

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Formatting a batch allocates nothing per record, whatever its values: the
// line buffer is reused and the only allocation is the []error Write returns.
func TestLogWriteAllocatesNothingPerRecord(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	recs := make([]*Record, 500)
	for i := range recs {
		value := []byte(strings.Repeat("plain text ", 10))
		switch i % 3 {
		case 0:
			for j := range value {
				value[j] = byte(rng.Uint32())
			}
		case 1:
			value = []byte(`{"name":"Zoë \"Z\" Ångström","note":"漢字\n😀"}`)
		}
		r := &kgo.Record{Topic: "orders", Partition: 1, Offset: int64(i), Key: value[:5], Value: value, Timestamp: time.UnixMilli(1_764_000_000_000 + int64(i/7))}
		recs[i] = &Record{Rec: r, Origin: Origin{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}}
	}
	for _, format := range []string{"JSON", "Text"} {
		l := NewLog(discard{}, format)
		if allocs := testing.AllocsPerRun(20, func() { l.Write(context.Background(), recs) }); allocs > 2 {
			t.Errorf("%s: %.1f allocations per batch of %d records, want 1 (the []error)", format, allocs, len(recs))
		}
	}
}
