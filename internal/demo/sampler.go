package demo

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	appsv1 "k8s.io/api/apps/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/render"
)

// pipelineInfo names one of the demo's pipelines and its Kafka objects.
type pipelineInfo struct {
	Name, Topic, Group string
}

// pipelineView is what the live view shows of one pipeline, sampled once a
// second.
type pipelineView struct {
	Name string
	// Row holds the `kubectl get sp -o wide` columns.
	Row            spRow
	PartitionLag   []int64
	TotalLag       int64
	LagHistory     []int64
	ReplicaHistory []int32
	Replicas       int32 // spec.replicas of the Deployment
	ReadyWorkers   int32
	Produced       int64
	Delivered      int64
	ProducedRate   float64
	DeliveredRate  float64
	DeadLetters    map[string]int
	Circuit        map[string]int // state → workers
	Events         []string
}

// spRow is a row of `kubectl get streampipelines -o wide`.
type spRow struct {
	Name, Ready, Replicas, Lag, DLQ, Age, Topic, Group, Rate, Status string
}

// snapshot is one frame of the live view.
type snapshot struct {
	Elapsed   time.Duration
	Duration  time.Duration
	Phase     string
	Receiver  string
	Chaos     bool
	Pipelines []pipelineView
	Pods      []runningPod
	Restarts  int64
	Kills     int64
	Log       []string
	StateDir  string
}

// sampler builds the snapshots.
type sampler struct {
	c        client.Client
	admin    *kadm.Client
	runner   *podRunner
	recv     *receiver // nil unless the sink is http
	reader   *topicReader
	ledger   *ledger
	chaos    *chaosMonkey // nil without --chaos
	log      *eventLog
	profile  loadProfile
	infos    []pipelineInfo
	stateDir string
	start    time.Time // the run's time zero (zero before the load starts)
	http     *http.Client

	mu      sync.Mutex
	seen    map[types.UID]bool // Events already written to the demo's log
	history map[string]*pipelineHistory
	totals  []lagSample
	latest  snapshot
}

type pipelineHistory struct {
	lag      []int64
	replicas []int32
	produced int64
	consumed int64 // delivered (http) or committed (other sinks)
	at       time.Time
}

const historyLength = 240

func (s *sampler) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		s.sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *sampler) sample(ctx context.Context) {
	now := time.Now()
	pods := s.runner.pods()
	circuits := s.scrapeCircuits(ctx, pods)
	var views []pipelineView
	var total int64
	for _, info := range s.infos {
		v := s.samplePipeline(ctx, info, now)
		v.Circuit = circuits[info.Name]
		total += v.TotalLag
		views = append(views, v)
	}
	snap := snapshot{
		Duration: s.profile.Duration, Chaos: s.chaos != nil, Pipelines: views, Pods: pods,
		Restarts: s.runner.restarts.Load(), Log: s.log.last(6), StateDir: s.stateDir,
	}
	if s.chaos != nil {
		snap.Kills = s.chaos.kills.Load()
	}
	if s.recv != nil {
		snap.Receiver = s.recv.phase()
	}
	s.mu.Lock()
	if !s.start.IsZero() {
		snap.Elapsed = now.Sub(s.start)
		snap.Phase = phaseAt(s.profile, snap.Elapsed)
		s.totals = append(s.totals, lagSample{At: now, Lag: total})
	} else {
		snap.Phase = "starting"
	}
	s.latest = snap
	s.mu.Unlock()
}

// phaseAt names the load's phase for the view's header.
func phaseAt(p loadProfile, t time.Duration) string {
	from, to := p.spikeWindow()
	switch {
	case t >= p.Duration:
		return "draining: load stopped, waiting for every record to be delivered or dead-lettered"
	case t >= from && t < to:
		return fmt.Sprintf("SPIKE: %.0f records/s per pipeline", p.Rate*p.Spike)
	case t < from:
		return fmt.Sprintf("steady: %.0f records/s per pipeline, spike at %s", p.Rate, from.Round(time.Second))
	}
	return fmt.Sprintf("steady: %.0f records/s per pipeline after the spike", p.Rate)
}

func (s *sampler) samplePipeline(ctx context.Context, info pipelineInfo, now time.Time) pipelineView {
	v := pipelineView{Name: info.Name}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()

	sp := &sluicev1.StreamPipeline{}
	if err := s.c.Get(ctx, client.ObjectKey{Namespace: demoNamespace, Name: info.Name}, sp); err == nil {
		v.Row = rowOf(sp, now)
		v.Events = s.events(ctx, sp)
		d := &appsv1.Deployment{}
		if err := s.c.Get(ctx, client.ObjectKey{Namespace: demoNamespace, Name: render.WorkerName(sp)}, d); err == nil {
			if d.Spec.Replicas != nil {
				v.Replicas = *d.Spec.Replicas
			}
			v.ReadyWorkers = d.Status.ReadyReplicas
		}
	}
	var committedSum int64
	if ends, err := s.admin.ListEndOffsets(ctx, info.Topic); err == nil {
		committed, _ := s.admin.FetchOffsets(ctx, info.Group)
		v.PartitionLag = make([]int64, 0)
		ends.Each(func(o kadm.ListedOffset) {
			for int(o.Partition) >= len(v.PartitionLag) {
				v.PartitionLag = append(v.PartitionLag, 0)
			}
			at := int64(0)
			if c, ok := committed.Lookup(o.Topic, o.Partition); ok && c.Err == nil {
				at = max(c.At, 0)
			}
			v.PartitionLag[o.Partition] = max(o.Offset-at, 0)
			committedSum += at
		})
		for _, l := range v.PartitionLag {
			v.TotalLag += l
		}
	}
	v.DeadLetters = s.reader.deadLetterCounts(info.Name)
	v.Produced = s.ledger.countOf(info.Name)
	if s.recv != nil {
		v.Delivered = s.recv.deliveredTo(info.Name)
	} else {
		v.Delivered = committedSum
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.history[info.Name]
	if h == nil {
		h = &pipelineHistory{}
		s.history[info.Name] = h
	}
	if !h.at.IsZero() {
		dt := now.Sub(h.at).Seconds()
		v.ProducedRate = float64(v.Produced-h.produced) / dt
		v.DeliveredRate = float64(v.Delivered-h.consumed) / dt
	}
	h.produced, h.consumed, h.at = v.Produced, v.Delivered, now
	h.lag = appendCapped(h.lag, v.TotalLag)
	h.replicas = appendCapped(h.replicas, v.Replicas)
	v.LagHistory = slices.Clone(h.lag)
	v.ReplicaHistory = slices.Clone(h.replicas)
	return v
}

func appendCapped[T any](s []T, v T) []T {
	s = append(s, v)
	if len(s) > historyLength {
		s = s[len(s)-historyLength:]
	}
	return s
}

// rowOf formats a pipeline as `kubectl get sp -o wide` does (the printer
// columns of the CRD).
func rowOf(sp *sluicev1.StreamPipeline, now time.Time) spRow {
	r := spRow{Name: sp.Name, Topic: sp.Spec.Source.Topic, Group: sp.Status.ConsumerGroup,
		Replicas: strconv.Itoa(int(sp.Status.Replicas)), Age: shortAge(now.Sub(sp.CreationTimestamp.Time))}
	if c := meta.FindStatusCondition(sp.Status.Conditions, sluicev1.ConditionReady); c != nil {
		r.Ready, r.Status = string(c.Status), c.Message
	}
	if sp.Status.Lag != nil {
		r.Lag = strconv.FormatInt(sp.Status.Lag.Total, 10)
	}
	if sp.Status.DeadLetter != nil && sp.Status.DeadLetter.Records != nil {
		r.DLQ = strconv.FormatInt(*sp.Status.DeadLetter.Records, 10)
	}
	if sp.Status.Rates != nil {
		r.Rate = strconv.FormatInt(sp.Status.Rates.ProcessPerSecond, 10)
	}
	return r
}

func shortAge(d time.Duration) string {
	switch {
	case d < 2*time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < 10*time.Minute:
		return fmt.Sprintf("%dm%ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return strconv.Itoa(int(d.Minutes())) + "m"
}

// events lists the latest Events about a pipeline, newest last.
func (s *sampler) events(ctx context.Context, sp *sluicev1.StreamPipeline) []string {
	list := &eventsv1.EventList{}
	if err := s.c.List(ctx, list, client.InNamespace(sp.Namespace)); err != nil {
		return nil
	}
	type ev struct {
		at   time.Time
		line string
	}
	var evs []ev
	for _, e := range list.Items {
		if e.Regarding.Kind != "StreamPipeline" || e.Regarding.Name != sp.Name {
			continue
		}
		at := e.EventTime.Time
		if e.Series != nil {
			at = e.Series.LastObservedTime.Time
		}
		if at.IsZero() {
			at = e.CreationTimestamp.Time
		}
		line := fmt.Sprintf("%s  %-7s %-18s %s", at.Format("15:04:05"), e.Type, e.Reason, e.Note)
		evs = append(evs, ev{at, line})
		s.mu.Lock()
		if !s.seen[e.UID] {
			if s.seen == nil {
				s.seen = map[types.UID]bool{}
			}
			s.seen[e.UID] = true
			s.log.sink("event " + sp.Name + ": " + line)
		}
		s.mu.Unlock()
	}
	slices.SortFunc(evs, func(a, b ev) int { return a.at.Compare(b.at) })
	out := make([]string, 0, 6)
	for _, e := range evs[max(len(evs)-6, 0):] {
		out = append(out, e.line)
	}
	return out
}

// scrapeCircuits reads each worker's circuit breaker state from its /metrics.
func (s *sampler) scrapeCircuits(ctx context.Context, pods []runningPod) map[string]map[string]int {
	out := map[string]map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range pods {
		if p.MetricsURL == "" || p.PID == 0 {
			continue
		}
		wg.Go(func() {
			state := scrapeCircuit(ctx, s.http, p.MetricsURL)
			if state == "" {
				return
			}
			mu.Lock()
			if out[p.Pipeline] == nil {
				out[p.Pipeline] = map[string]int{}
			}
			out[p.Pipeline][state]++
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// scrapeCircuit returns "closed", "half-open" or "open" from a worker's
// sluice_worker_circuit_state gauge ("" when it can't be read).
func scrapeCircuit(ctx context.Context, c *http.Client, url string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return ""
	}
	resp, err := c.Do(req)
	if err != nil {
		return ""
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "sluice_worker_circuit_state") {
			continue
		}
		f := strings.Fields(line)
		switch f[len(f)-1] {
		case "0":
			return "closed"
		case "1":
			return "half-open"
		case "2":
			return "open"
		}
	}
	return ""
}

// current returns the latest snapshot.
func (s *sampler) current() snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.latest
}

// lagSamples returns the total lag over the run.
func (s *sampler) lagSamples() []lagSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.totals)
}

// startRun sets the run's time zero.
func (s *sampler) startRun(t time.Time) {
	s.mu.Lock()
	s.start = t
	s.mu.Unlock()
}

// eventLog is the demo's own log (pod runner, chaos): the view shows its
// tail, and every line also goes to the demo's log file.
type eventLog struct {
	mu    sync.Mutex
	lines []string
	sink  func(string)
}

func (l *eventLog) add(format string, args ...any) {
	line := fmt.Sprintf("%s  %s", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	l.mu.Lock()
	l.lines = appendCapped(l.lines, line)
	l.mu.Unlock()
	if l.sink != nil {
		l.sink(line)
	}
}

func (l *eventLog) last(n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines[max(len(l.lines)-n, 0):])
}
