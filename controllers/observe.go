package controllers

import (
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/kafka"
	"github.com/sluice-dev/sluice/internal/lag"
	"github.com/sluice-dev/sluice/internal/scaling"
)

// healthWindow is how many samples the stall verdict looks at: at the default
// 2 s poll, a partition must stand still for 20 s with lag to count as stalled.
const healthWindow = 10

// observer keeps, per pipeline, what the lag polls found and what the scaling
// policy decided between reconciles. The cluster poll loops feed it; it wakes
// the reconciler only when something it would write changed: the replica
// count, a condition, or (at most every statusSyncPeriod) the lag figures. A
// steady pipeline therefore costs Kafka requests, not API server writes.
type observer struct {
	// events wake a reconcile that acts: a replica decision or a lag
	// condition changed.
	events chan event.TypedGenericEvent[*sluicev1.StreamPipeline]
	// refreshes wake one that only writes new figures: it waits behind the
	// other work of the queue (enqueueLowPriority).
	refreshes        chan event.TypedGenericEvent[*sluicev1.StreamPipeline]
	statusSyncPeriod time.Duration
	metrics          *pipelineMetrics

	mu        sync.Mutex
	pipelines map[types.NamespacedName]*observed
}

// observed is one pipeline's observation state.
type observed struct {
	params observeParams
	// applied is the replica count the last reconcile gave the Deployment.
	applied int32
	// lastScale is the last status.lastScale this process recorded.
	lastScale    *sluicev1.ScaleStatus
	appliedKnown bool

	window      *lag.Window
	scaleState  scaling.State
	view        *lagView
	decision    *scaling.Decision
	deadLetters []int64 // DLQ depth of recent samples, oldest first
	stopped     int     // samples in a row with lag and no group members

	published     time.Time
	publishedView *lagView

	// provisioned remembers the last successful topic provisioning, so that
	// reconciles the lag polls trigger don't repeat it (drift is converged by
	// the periodic resync).
	provisioned provisioning
}

// provisioning is a successful topic provisioning of one spec generation.
type provisioning struct {
	generation       int64
	at               time.Time
	sourcePartitions int32
}

// observeParams are what the observer needs from the spec; reconcile refreshes
// them.
type observeParams struct {
	policy             scaling.Policy
	startFrom          lag.StartFrom
	suspended          bool
	lagCriticalSeconds int64
}

// lagView is the status-relevant outcome of one sample.
type lagView struct {
	At  time.Time
	Err error

	Lag            lag.Lag
	Partitions     int32
	TimeLagSeconds *int64
	// PartitionSeconds is each partition's time lag, where it is known.
	PartitionSeconds map[int32]int64
	Ingest, Process  float64
	RatesKnown       bool
	Health           lag.Health
	// StoppedSamples counts the samples in a row with lag and no members.
	StoppedSamples int

	DeadLetters        *int64
	DeadLettersGrowing bool

	// StaticMembers are the group.instance.ids in the group.
	StaticMembers []string
}

func newObserver(statusSyncPeriod time.Duration, m *pipelineMetrics) *observer {
	return &observer{
		events:           make(chan event.TypedGenericEvent[*sluicev1.StreamPipeline], 1024),
		refreshes:        make(chan event.TypedGenericEvent[*sluicev1.StreamPipeline], 1024),
		statusSyncPeriod: statusSyncPeriod,
		metrics:          m,
		pipelines:        map[types.NamespacedName]*observed{},
	}
}

// register creates or refreshes a pipeline's entry.
func (o *observer) register(key types.NamespacedName, p observeParams) {
	o.mu.Lock()
	defer o.mu.Unlock()
	ob, ok := o.pipelines[key]
	if !ok {
		ob = &observed{window: lag.NewWindow(healthWindow)}
		o.pipelines[key] = ob
	}
	ob.params = p
}

// forget drops a deleted pipeline.
func (o *observer) forget(key types.NamespacedName) {
	o.mu.Lock()
	delete(o.pipelines, key)
	o.mu.Unlock()
	o.metrics.forget(key)
}

// setApplied records the replica count reconcile gave the Deployment; the
// policy decides from it.
func (o *observer) setApplied(key types.NamespacedName, n int32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if ob, ok := o.pipelines[key]; ok {
		ob.applied, ob.appliedKnown = n, true
	}
}

// keepLastScale returns the newer of st and the last scale this process
// recorded for the pipeline, and remembers it.
func (o *observer) keepLastScale(key types.NamespacedName, st *sluicev1.ScaleStatus) *sluicev1.ScaleStatus {
	o.mu.Lock()
	defer o.mu.Unlock()
	ob, ok := o.pipelines[key]
	if !ok {
		return st
	}
	if st == nil || ob.lastScale != nil && ob.lastScale.Time.After(st.Time.Time) {
		if ob.lastScale != nil {
			return ob.lastScale.DeepCopy()
		}
		return st
	}
	ob.lastScale = st.DeepCopy()
	return st
}

// lastApplied is the replica count this process last gave the pipeline's
// Deployment. It, not the informer cache (which may not have seen that write
// yet), says whether a reconcile changed the count.
func (o *observer) lastApplied(key types.NamespacedName) (int32, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	ob, ok := o.pipelines[key]
	if !ok || !ob.appliedKnown {
		return 0, false
	}
	return ob.applied, true
}

// provisioningDone records a successful topic provisioning.
func (o *observer) provisioningDone(key types.NamespacedName, p provisioning) {
	o.mu.Lock()
	defer o.mu.Unlock()
	ob, ok := o.pipelines[key]
	if !ok { // the first reconcile provisions before it registers the watch
		ob = &observed{window: lag.NewWindow(healthWindow)}
		o.pipelines[key] = ob
	}
	ob.provisioned = p
}

// provisioningCurrent returns the last provisioning when it still holds: same
// spec generation, younger than maxAge, and the source topic has not grown
// since (the lag samples count its partitions).
func (o *observer) provisioningCurrent(key types.NamespacedName, generation int64, now time.Time, maxAge time.Duration) (provisioning, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	ob, ok := o.pipelines[key]
	if !ok {
		return provisioning{}, false
	}
	p := ob.provisioned
	fresh := p.generation == generation && now.Sub(p.at) < maxAge
	sameSource := ob.view == nil || ob.view.Err != nil || ob.view.Partitions == p.sourcePartitions
	return p, fresh && sameSource
}

// take returns the latest view and decision for reconcile to write, and marks
// them published.
func (o *observer) take(key types.NamespacedName, now time.Time) (*lagView, *scaling.Decision) {
	o.mu.Lock()
	defer o.mu.Unlock()
	ob, ok := o.pipelines[key]
	if !ok {
		return nil, nil
	}
	ob.published, ob.publishedView = now, ob.view
	return ob.view, ob.decision
}

// staticMembers are the group.instance.ids the latest sample of a pipeline's
// group found.
func (o *observer) staticMembers(key types.NamespacedName) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if ob, ok := o.pipelines[key]; ok && ob.view != nil {
		return ob.view.StaticMembers
	}
	return nil
}

// observe is the pool's callback: one sample of one pipeline.
func (o *observer) observe(user string, obs kafka.Observation) {
	ns, name, _ := strings.Cut(user, "/")
	key := types.NamespacedName{Namespace: ns, Name: name}

	o.mu.Lock()
	ob, ok := o.pipelines[key]
	if !ok {
		o.mu.Unlock()
		return
	}
	view := ob.digest(obs)
	ob.view = view
	// The policy decides from the replicas the Deployment has; until a reconcile
	// has applied a count, that is not known and there is nothing to decide.
	if ob.appliedKnown {
		d := ob.params.policy.Decide(scaling.Input{
			Now:        obs.At,
			Current:    ob.applied,
			Partitions: view.Partitions,
			TotalLag:   view.Lag.Total,
			LagKnown:   view.Err == nil,
		}, &ob.scaleState)
		ob.decision = &d
	}
	w := ob.needsReconcile(obs.At, o.statusSyncPeriod)
	params := ob.params
	o.mu.Unlock()

	o.metrics.observed(key, view, params)
	if w == noWake {
		return
	}
	events := o.events
	if w == refreshWake {
		events = o.refreshes
	}
	sp := &sluicev1.StreamPipeline{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	select {
	case events <- event.TypedGenericEvent[*sluicev1.StreamPipeline]{Object: sp}:
	default: // the queue is full of wake-ups already; the next sample asks again
	}
}

// digest adds a sample to the window and computes what status would show.
func (ob *observed) digest(obs kafka.Observation) *lagView {
	v := &lagView{At: obs.At, Err: obs.Err}
	if obs.Err != nil {
		return v
	}
	v.StaticMembers = obs.StaticMembers
	s := lag.Sample{At: obs.At, Members: obs.Members, Partitions: make([]lag.PartitionOffsets, 0, len(obs.Partitions))}
	oldest := lag.OldestUnconsumed{}
	for _, p := range obs.Partitions {
		committed := p.Committed
		if p.OnlyMarkers {
			committed = p.End // nothing readable is left: the marker is not lag
		}
		s.Partitions = append(s.Partitions, lag.PartitionOffsets{Partition: p.Partition, Start: p.Start, End: p.End, Committed: committed})
		if !p.Oldest.IsZero() {
			oldest[p.Partition] = p.Oldest
		}
	}
	ob.window.Add(s)
	v.Partitions = int32(len(s.Partitions))
	v.Lag = lag.Compute(s, ob.params.startFrom)
	if secs, ok := lag.TimeLagSeconds(v.Lag, oldest, obs.At); ok && v.Lag.Total > 0 {
		v.TimeLagSeconds = &secs
	}
	v.PartitionSeconds = lag.PartitionTimeLag(v.Lag, oldest, obs.At)
	if samples := ob.window.Samples(); len(samples) >= 2 {
		// Over the whole window rather than the last two samples: smoother, and
		// a single slow poll does not make the rate jump.
		v.Ingest, v.Process, v.RatesKnown = lag.Rates(samples[0], samples[len(samples)-1])
	}
	v.Health = ob.window.Health(ob.params.startFrom)
	if v.Health.Stopped {
		ob.stopped++
	} else {
		ob.stopped = 0
	}
	v.StoppedSamples = ob.stopped

	if obs.DeadLetterErr == nil {
		n := obs.DeadLetterRecords
		v.DeadLetters = &n
		ob.deadLetters = append(ob.deadLetters, n)
		if len(ob.deadLetters) > healthWindow {
			ob.deadLetters = ob.deadLetters[1:]
		}
		v.DeadLettersGrowing = n > ob.deadLetters[0]
	}
	return v
}

// wake is what a lag sample asks of the reconciler.
type wake int

const (
	// noWake: nothing the pipeline shows or runs changed.
	noWake wake = iota
	// refreshWake: only figures changed (or there are none yet); the reconcile
	// may wait behind others (lowPriority).
	refreshWake
	// actWake: a replica decision or a lag condition changed.
	actWake
)

// needsReconcile says whether this sample changes what the pipeline shows or
// runs: a replica decision or a condition at once (actWake), changed figures
// at most every syncPeriod, and a pipeline's first figures (refreshWake).
//
// Lag going from 0 to some and back is a figure like the others. A group that
// keeps up reads 0 in one sample and a few records in the next; waking on that
// wrote the status of such pipelines 2–3 times per sync period
// (BenchmarkFleetLive, lag 0–2 records). What must act on lag at once does:
// the scaling decision (a pipeline scaled to zero wakes on its first lag), the
// lag conditions, and the metrics, which every sample sets.
func (ob *observed) needsReconcile(now time.Time, syncPeriod time.Duration) wake {
	pub := ob.publishedView
	switch {
	case !ob.params.suspended && ob.decision != nil && ob.decision.Desired != ob.applied:
		return actWake
	case pub == nil:
		return refreshWake
	case conditionsOf(pub, ob.params) != conditionsOf(ob.view, ob.params):
		return actWake
	case now.Sub(ob.published) >= syncPeriod && !sameFigures(pub, ob.view):
		return refreshWake
	}
	return noWake
}

// sameFigures compares what the status prints.
func sameFigures(a, b *lagView) bool {
	return a.Lag.Total == b.Lag.Total && a.Lag.MaxPartition == b.Lag.MaxPartition &&
		int64(a.Ingest) == int64(b.Ingest) && int64(a.Process) == int64(b.Process) &&
		ptrEq(a.DeadLetters, b.DeadLetters) && ptrEq(a.TimeLagSeconds, b.TimeLagSeconds)
}

func ptrEq(a, b *int64) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

// conditionSet is the statuses and reasons of the lag conditions, for change
// detection.
type conditionSet [3]string

func conditionsOf(v *lagView, p observeParams) conditionSet {
	var cs conditionSet
	for i, c := range lagConditions(v, p) {
		cs[i] = string(c.Status) + "/" + c.Reason
	}
	return cs
}
