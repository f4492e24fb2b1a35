package scale

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// fleetWatch follows a fleet's pipelines through one informer (a list, then a
// watch that the informer resumes when the API server ends it): which are
// Ready, and while recording, when each was modified. The benchmark reads the
// fleet this way so as not to load the server it measures: listing 1,000
// pipelines every 250 ms, as it did before, took about a fifth of the API
// server's CPU while the fleet rolled out (a profile of kube-apiserver,
// 2026-12-03).
type fleetWatch struct {
	n        int
	mu       sync.Mutex
	ready    map[string]bool
	allReady chan struct{}
	// recording, when set, collects the times of each pipeline's
	// modifications (a new resourceVersion) in modified.
	recording bool
	modified  map[string][]time.Time
	// askedAt is when the benchmark sent each pipeline's create, readyAfter
	// how long each took from there to its first Ready.
	askedAt    map[string]time.Time
	readyAfter []time.Duration
	stop       context.CancelFunc
}

// watchFleet starts following the n pipelines of namespace ns.
func watchFleet(b *testing.B, f *fleet, ns string) *fleetWatch {
	b.Helper()
	ctx, stop := context.WithCancel(context.Background())
	c, err := cache.New(f.env.Config, cache.Options{Scheme: f.env.Scheme, DefaultNamespaces: map[string]cache.Config{ns: {}}})
	if err != nil {
		b.Fatal(err)
	}
	inf, err := c.GetInformer(ctx, &sluicev1.StreamPipeline{})
	if err != nil {
		b.Fatal(err)
	}
	w := &fleetWatch{n: f.n, ready: map[string]bool{}, askedAt: map[string]time.Time{}, allReady: make(chan struct{}), stop: stop}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { w.seen(nil, obj) },
		UpdateFunc: w.seen,
	}); err != nil {
		b.Fatal(err)
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		b.Fatal("the benchmark's cache of the fleet did not sync")
	}
	b.Cleanup(stop)
	return w
}

func (w *fleetWatch) seen(old, obj any) {
	sp, ok := obj.(*sluicev1.StreamPipeline)
	if !ok {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if prev, ok := old.(*sluicev1.StreamPipeline); ok && w.recording && prev.ResourceVersion != sp.ResourceVersion {
		w.modified[sp.Name] = append(w.modified[sp.Name], time.Now())
	}
	if w.ready[sp.Name] || !meta.IsStatusConditionTrue(sp.Status.Conditions, sluicev1.ConditionReady) {
		return
	}
	w.ready[sp.Name] = true
	if at, ok := w.askedAt[sp.Name]; ok {
		w.readyAfter = append(w.readyAfter, time.Since(at))
	}
	if len(w.ready) == w.n {
		close(w.allReady)
	}
}

// waitAllReady waits until every pipeline has been Ready once, at most 5
// minutes after start.
func (w *fleetWatch) waitAllReady(b *testing.B, start time.Time) {
	b.Helper()
	select {
	case <-w.allReady:
	case <-time.After(time.Until(start.Add(5 * time.Minute))):
		w.mu.Lock()
		defer w.mu.Unlock()
		b.Fatalf("%d of %d pipelines Ready after 5 minutes", len(w.ready), w.n)
	}
}

// creating notes that the benchmark is about to create pipeline name.
func (w *fleetWatch) creating(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.askedAt[name] = time.Now()
}

// reportReadyLatency reports, over the pipelines, the time from the create
// request to the first Ready: its median, 99th percentile and maximum. This
// is the operator's share of "all Ready": the time to all Ready also holds
// the benchmark's own serial creates, which take most of it on 2 cores.
func (w *fleetWatch) reportReadyLatency(b *testing.B) {
	w.mu.Lock()
	defer w.mu.Unlock()
	d := slices.Clone(w.readyAfter)
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	at := func(q float64) float64 { return d[min(len(d)-1, int(q*float64(len(d))))].Seconds() }
	b.ReportMetric(at(0.5), "s-create-to-ready-p50")
	b.ReportMetric(at(0.99), "s-create-to-ready-p99")
	b.ReportMetric(d[len(d)-1].Seconds(), "s-create-to-ready-max")
}

// record starts collecting modifications.
func (w *fleetWatch) record() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.recording, w.modified = true, map[string][]time.Time{}
}

// recorded stops collecting and returns the times of each pipeline's
// modifications since record.
func (w *fleetWatch) recorded() map[string][]time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.recording = false
	return w.modified
}
