package scale

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// measureWindow measures windowCycles poll cycles of a Ready fleet and reports:
// the operator's CPU per cycle and peak RSS; the API server's and etcd's CPU
// per cycle; the Kafka requests per cycle by
// API; the operator's reconciles per second (its own
// controller_runtime_reconcile_total); the writes the API server served per
// second, by verb and resource and in total (the operator's, see notOperator);
// and the status writes per pipeline per --status-sync-period
// (reportStatusWrites, from the fleet's informer: each modification of a
// pipeline in the window is one status write, as nothing else changes a Ready
// pipeline).
func measureWindow(b *testing.B, f *fleet, fw *fleetWatch, ns string) {
	b.Helper()
	ctx := context.Background()

	writes0, err := apiServerWrites(ctx, f.env.Config)
	if err != nil {
		b.Fatal(err)
	}
	reconciles0, err := reconcileTotal(ctx, f.operator.metricsURL)
	if err != nil {
		b.Fatal(err)
	}
	cp, err := findControlPlane(f.env.Config.Host)
	if err != nil {
		b.Fatal(err)
	}
	apiCPU0, etcdCPU0 := processCPU(b, cp.apiServer), processCPU(b, cp.etcd)
	kafka0, cpu0 := f.requests(), processCPU(b, f.operator.pid)
	start := time.Now()
	fw.record()

	time.Sleep(windowCycles * sluicev1.DefaultPollInterval)

	perPipeline := fw.recorded()
	cpu, kafka1 := processCPU(b, f.operator.pid)-cpu0, f.requests()
	apiCPU, etcdCPU := processCPU(b, cp.apiServer)-apiCPU0, processCPU(b, cp.etcd)-etcdCPU0
	reconciles1, err := reconcileTotal(ctx, f.operator.metricsURL)
	if err != nil {
		b.Fatal(err)
	}
	writes1, err := apiServerWrites(ctx, f.env.Config)
	if err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start).Seconds()

	b.ReportMetric(float64(cpu.Milliseconds())/windowCycles, "operator-cpu-ms/cycle")
	b.ReportMetric(float64(peakRSS(b, f.operator.pid))/(1<<20), "operator-peak-rss-MiB")
	b.ReportMetric(float64(apiCPU.Milliseconds())/windowCycles, "apiserver-cpu-ms/cycle")
	b.ReportMetric(float64(etcdCPU.Milliseconds())/windowCycles, "etcd-cpu-ms/cycle")
	var total int64
	for name, v := range kafka1 {
		d := v - kafka0[name]
		total += d
		b.ReportMetric(float64(d)/windowCycles, name+"-req/cycle")
	}
	b.ReportMetric(float64(total)/windowCycles, "kafka-req/cycle")
	b.ReportMetric((reconciles1-reconciles0)/elapsed, "reconciles/s")

	writes := writes1.minus(writes0)
	writes.report(b, "", elapsed, "writes/s")
	b.ReportMetric(writes.operatorTotal()/elapsed, "api-writes/s")

	reportStatusWrites(b, perPipeline, f.n, time.Since(start))
	reportLag(b, f, ns)
}

// statusWrites summarises the times each pipeline's status was written in a
// window of periods sync periods.
type statusWrites struct {
	// PerPipeline is the writes per pipeline per period, on average.
	PerPipeline float64
	// Most is the most of any one pipeline, as (writes − 1) per period: at most
	// 1 when its writes were a period apart or more on average (a window of 6
	// periods holds 7 writes 10 s apart).
	Most float64
	// ShortGaps counts two writes of one pipeline less than 90 % of a period
	// apart, which only a condition or replica change may cause.
	ShortGaps int
}

func summariseStatusWrites(writes map[string][]time.Time, pipelines int, window, period time.Duration) statusWrites {
	periods := window.Seconds() / period.Seconds()
	var sum, most, short int
	for _, at := range writes {
		sum += len(at)
		most = max(most, len(at)-1)
		for i := 1; i < len(at); i++ {
			if at[i].Sub(at[i-1]) < period*9/10 {
				short++
			}
		}
	}
	return statusWrites{
		PerPipeline: float64(sum) / float64(pipelines) / periods,
		Most:        float64(most) / periods,
		ShortGaps:   short,
	}
}

func reportStatusWrites(b *testing.B, writes map[string][]time.Time, pipelines int, window time.Duration) {
	b.Helper()
	st := summariseStatusWrites(writes, pipelines, window, statusSyncPeriod(b))
	b.ReportMetric(st.PerPipeline, "status-writes/pipeline/period")
	b.ReportMetric(st.Most, "max-status-writes/pipeline/period")
	b.ReportMetric(float64(st.ShortGaps), "status-write-gaps-under-period")
}

// reportLag reports the mean and the largest lag the pipelines' status shows
// at the end of the window: what the load made of the lag.
func reportLag(b *testing.B, f *fleet, ns string) {
	b.Helper()
	list := &sluicev1.StreamPipelineList{}
	if err := f.env.Client.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		b.Fatal(err)
	}
	var sum, most int64
	for i := range list.Items {
		if l := list.Items[i].Status.Lag; l != nil {
			sum += l.Total
			most = max(most, l.Total)
		}
	}
	b.ReportMetric(float64(sum)/float64(max(len(list.Items), 1)), "lag-mean-records")
	b.ReportMetric(float64(most), "lag-max-records")
}

// statusSyncPeriod is the operator's --status-sync-period: its default unless
// SLUICE_BENCH_OPERATOR_FLAGS sets it.
func statusSyncPeriod(b *testing.B) time.Duration {
	b.Helper()
	period := 10 * time.Second // cmd/manager's default
	for _, f := range strings.Fields(os.Getenv("SLUICE_BENCH_OPERATOR_FLAGS")) {
		if v, ok := strings.CutPrefix(strings.TrimLeft(f, "-"), "status-sync-period="); ok {
			d, err := time.ParseDuration(v)
			if err != nil {
				b.Fatalf("SLUICE_BENCH_OPERATOR_FLAGS: %s: %v", f, err)
			}
			period = d
		}
	}
	return period
}

func TestSummariseStatusWrites(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	every := func(gap time.Duration, n int) []time.Time {
		var at []time.Time
		for i := range n {
			at = append(at, t0.Add(time.Duration(i)*gap))
		}
		return at
	}
	const period, window = 10 * time.Second, 60 * time.Second
	cases := []struct {
		name   string
		writes map[string][]time.Time
		want   statusWrites
	}{
		{"none", map[string][]time.Time{}, statusWrites{}},
		{"one pipeline every period, the other idle", map[string][]time.Time{"a": every(period, 7)}, statusWrites{PerPipeline: 7.0 / 2 / 6, Most: 1}},
		{"every 2 s", map[string][]time.Time{"a": every(2*time.Second, 30), "b": every(period, 6)}, statusWrites{PerPipeline: 36.0 / 2 / 6, Most: 29.0 / 6, ShortGaps: 29}},
		{"a condition change between two syncs", map[string][]time.Time{"a": append(every(period, 3), t0.Add(21*time.Second)), "b": nil},
			statusWrites{PerPipeline: 4.0 / 2 / 6, Most: 3.0 / 6, ShortGaps: 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := summariseStatusWrites(c.writes, 2, window, period); got != c.want {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
}
