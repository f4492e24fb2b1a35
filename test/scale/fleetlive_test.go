package scale

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"
)

// BenchmarkFleetLive is BenchmarkFleet with traffic: from before the pipelines
// are applied until the window is measured, every source topic receives
// records (SLUICE_BENCH_RATE records/s in total, default 1,000, one topic
// after the other) and every pipeline's group commits once a second,
// SLUICE_BENCH_MIN_TRAIL to SLUICE_BENCH_MAX_TRAIL (default 1 to 200) records
// short of the end (liveLoad), so every lag sample differs from the one
// before. The lag stays below the
// default lagThreshold (1,000: one replica each) and far below
// lagCriticalSeconds; the groups have no members, so every pipeline reports
// ConsumerStalled (GroupStopped) once a health window has passed, before the
// measured window starts (settleTime).
func BenchmarkFleetLive(b *testing.B) {
	cfg := loadConfig{
		Rate:           envInt(b, "SLUICE_BENCH_RATE", 1000),
		MinTrail:       int64(envInt(b, "SLUICE_BENCH_MIN_TRAIL", 1)),
		MaxTrail:       int64(envInt(b, "SLUICE_BENCH_MAX_TRAIL", 200)),
		CommitInterval: time.Second,
		RecordBytes:    100,
	}
	runFleet(b, func(ctx context.Context, b *testing.B, f *fleet, groups []string) func() {
		l, err := startLiveLoad(ctx, f.kafka.ListenAddrs(), f.topics, groups, cfg)
		if err != nil {
			b.Fatal(err)
		}
		return func() {
			st, err := l.stop()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(st.Records)/st.Elapsed.Seconds(), "records/s")
			b.ReportMetric(float64(st.Commits)/st.Elapsed.Seconds(), "commits/s")
		}
	})
}

func envInt(b *testing.B, name string, def int) int {
	b.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		b.Fatalf("%s=%q: want a whole number", name, v)
	}
	return n
}
