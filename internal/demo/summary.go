package demo

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
	"time"
)

// pipelineOutcome is what is known of one pipeline at the end of a run.
type pipelineOutcome struct {
	Name        string
	SourceTopic string
	// Produced is every record the broker acknowledged to the generator.
	Produced []producedRecord
	// Keys is what the sink saw per idempotency key; Effects counts, per
	// record id, how many times an effect was applied.
	Keys    map[string]keyStats
	Effects map[string]int
	// SinkCountsRedeliveries is false for sinks that can't tell a redelivery
	// (PostgreSQL's ON CONFLICT DO NOTHING makes it a no-op no one sees).
	SinkCountsRedeliveries bool
	// Dead and Copies are the records in the dead-letter and retry topics.
	Dead, Copies []parkedRecord
	// Committed is the group's committed offset per topic and partition.
	Committed map[string]map[int32]int64
	// RetryAttempts is the pipeline's retry count: a record that failed
	// RetryAttempts+1 times transiently has exhausted its retries.
	RetryAttempts int
}

// PipelineSummary accounts for every record a pipeline was given.
type PipelineSummary struct {
	Name     string `json:"name"`
	Produced int    `json:"produced"`
	// PoisonSent is how many poison pills the generator produced.
	PoisonSent int `json:"poisonSent"`
	// Delivered records had their effect applied; DeliveredMoreThanOnce of
	// them reached the sink again (at-least-once redeliveries: the
	// idempotency key made them no-ops), Redeliveries times in all.
	Delivered             int  `json:"delivered"`
	DeliveredOnce         int  `json:"deliveredOnce"`
	DeliveredMoreThanOnce int  `json:"deliveredMoreThanOnce"`
	Redeliveries          int  `json:"redeliveries"`
	RedeliveriesCounted   bool `json:"redeliveriesCounted"`
	// DuplicateEffects counts effects applied more than once for one record.
	DuplicateEffects int `json:"duplicateEffects"`
	// DeadLettered counts the records (not delivered) in the DLQ, by reason;
	// DeadLetterCopies counts the DLQ's records (a redelivered pill is parked
	// twice).
	DeadLettered         int            `json:"deadLettered"`
	DeadLetteredByReason map[string]int `json:"deadLetteredByReason"`
	DeadLetterCopies     int            `json:"deadLetterCopies"`
	// ExhaustedRetries are the records the sink failed transiently on every
	// attempt and never accepted, by the sink's own count.
	ExhaustedRetries int `json:"exhaustedRetries"`
	// DLQMatches: the DLQ holds exactly the poison pills sent and the records
	// that exhausted their retries; DLQMismatch says what differs.
	DLQMatches  bool     `json:"dlqMatches"`
	DLQMismatch []string `json:"dlqMismatch,omitempty"`
	// Not delivered and not dead-lettered: still waiting in the source topic,
	// in a retry topic, or lost (every place it was in is committed past).
	NotYetConsumed int      `json:"notYetConsumed"`
	StillInRetry   int      `json:"stillInRetry"`
	PendingIDs     []string `json:"pendingIds,omitempty"`
	Lost           int      `json:"lost"`
	LostIDs        []string `json:"lostIds,omitempty"`
}

// account sorts every produced record into delivered, dead-lettered, still
// on its way, or lost, and checks the dead letters against what should be
// there.
func account(in pipelineOutcome) PipelineSummary {
	s := PipelineSummary{Name: in.Name, Produced: len(in.Produced), DeadLetteredByReason: map[string]int{},
		RedeliveriesCounted: in.SinkCountsRedeliveries, DeadLetterCopies: len(in.Dead)}
	for _, n := range in.Effects {
		s.DuplicateEffects += max(n-1, 0)
	}
	for _, k := range in.Keys {
		if k.Deliveries > 1 {
			s.DeliveredMoreThanOnce++
			s.Redeliveries += k.Deliveries - 1
		}
	}
	dead := map[string]parkedRecord{}
	for _, d := range in.Dead {
		dead[d.ID] = d
	}
	copies := map[string][]parkedRecord{}
	for _, c := range in.Copies {
		copies[c.ID] = append(copies[c.ID], c)
	}
	committed := func(topic string, p int32) int64 {
		return max(in.Committed[topic][p], 0) // no commit: nothing consumed
	}
	delivered := func(id string) bool { return in.Effects[id] > 0 }

	poison := map[string]bool{}
	pending := map[string]bool{} // still on its way: not checked against the DLQ
	for _, r := range in.Produced {
		if r.Kind != kindGood {
			poison[r.ID] = true
			s.PoisonSent++
		}
		switch d, isDead := dead[r.ID]; {
		case delivered(r.ID):
			s.Delivered++
		case isDead:
			s.DeadLettered++
			s.DeadLetteredByReason[dlqReason(d.Class, d.Message)]++
		case r.Offset >= committed(in.SourceTopic, r.Partition):
			s.NotYetConsumed++
			pending[r.ID] = true
			s.PendingIDs = appendUpTo(s.PendingIDs, fmt.Sprintf("%s at %s[%d] offset %d (committed %d)",
				r.ID, in.SourceTopic, r.Partition, r.Offset, committed(in.SourceTopic, r.Partition)), 10)
		case slices.ContainsFunc(copies[r.ID], func(c parkedRecord) bool { return c.Offset >= committed(c.Topic, c.Partition) }):
			s.StillInRetry++
			pending[r.ID] = true
			c := copies[r.ID][len(copies[r.ID])-1]
			s.PendingIDs = appendUpTo(s.PendingIDs, fmt.Sprintf("%s at %s[%d] offset %d (committed %d)",
				r.ID, c.Topic, c.Partition, c.Offset, committed(c.Topic, c.Partition)), 10)
		default:
			s.Lost++
			s.LostIDs = appendUpTo(s.LostIDs, r.ID, 20)
		}
	}
	s.DeliveredOnce = s.Delivered - s.DeliveredMoreThanOnce

	// The sink's view of exhausted retries, against the DLQ's, for the
	// records that arrived where they are going.
	exhausted := map[string]bool{}
	for key, k := range in.Keys {
		if k.Failures >= in.RetryAttempts+1 && k.Deliveries == 0 && !pending[key] {
			exhausted[key] = true
		}
	}
	s.ExhaustedRetries = len(exhausted)
	settledPoison := 0
	for id := range poison {
		if pending[id] {
			continue
		}
		settledPoison++
		if _, ok := dead[id]; !ok {
			s.DLQMismatch = append(s.DLQMismatch, "poison pill not in the DLQ: "+id)
		}
	}
	for id := range exhausted {
		if _, ok := dead[id]; !ok && !poison[id] {
			s.DLQMismatch = append(s.DLQMismatch, "exhausted its retries, not in the DLQ: "+id)
		}
	}
	for id := range dead {
		if !poison[id] && !exhausted[id] && !delivered(id) {
			s.DLQMismatch = append(s.DLQMismatch, "in the DLQ, neither a poison pill nor out of retries: "+id)
		}
	}
	slices.Sort(s.DLQMismatch)
	if len(s.DLQMismatch) > 20 {
		s.DLQMismatch = append(s.DLQMismatch[:20], fmt.Sprintf("… %d more", len(s.DLQMismatch)-20))
	}
	s.DLQMatches = len(s.DLQMismatch) == 0 && s.DeadLettered == settledPoison+s.ExhaustedRetries
	return s
}

func appendUpTo(s []string, v string, n int) []string {
	if len(s) < n {
		s = append(s, v)
	}
	return s
}

// Summary is the demo's result, printed at the end and written as JSON with
// --summary-json.
type Summary struct {
	Pipelines []PipelineSummary `json:"pipelines"`

	Produced         int `json:"produced"`
	Delivered        int `json:"delivered"`
	DeadLettered     int `json:"deadLettered"`
	StillInRetry     int `json:"stillInRetry"`
	NotYetConsumed   int `json:"notYetConsumed"`
	Lost             int `json:"lost"`
	DuplicateEffects int `json:"duplicateEffects"`

	// MaxLag is the largest total lag sampled (records); DrainSeconds is the
	// time from the end of the spike until the lag was under two seconds of
	// steady ingest again (nil: it never was).
	MaxLag       int64    `json:"maxLag"`
	DrainSeconds *float64 `json:"drainSeconds,omitempty"`

	ScaleUps   []ScaleEvent `json:"scaleUps"`
	ScaleDowns []ScaleEvent `json:"scaleDowns"`
	// WorkerRestarts counts the worker processes the pod runner restarted;
	// ChaosKills the workers --chaos SIGKILLed.
	WorkerRestarts int64 `json:"workerRestarts"`
	ChaosKills     int64 `json:"chaosKills"`

	// FirstDeliverySeconds is the time from the demo's start to the first
	// record the sink accepted.
	FirstDeliverySeconds *float64   `json:"firstDeliverySeconds,omitempty"`
	FirstDeliveryAt      *time.Time `json:"firstDeliveryAt,omitempty"`
	RunSeconds           float64    `json:"runSeconds"`
	// Drained says every record was delivered or dead-lettered in time.
	Drained     bool `json:"drained"`
	Interrupted bool `json:"interrupted"`
	// OK: nothing lost and no duplicate effect.
	OK bool `json:"ok"`
}

// ScaleEvent is a change of a pipeline's replicas, seconds into the run.
type ScaleEvent struct {
	Pipeline string  `json:"pipeline"`
	AtSecond float64 `json:"atSecond"`
	From     int32   `json:"from"`
	To       int32   `json:"to"`
}

// summarize adds up the pipelines' accounts.
func summarize(pipelines []PipelineSummary, scales []scaleChange, runStart time.Time) Summary {
	s := Summary{Pipelines: pipelines, ScaleUps: []ScaleEvent{}, ScaleDowns: []ScaleEvent{}}
	for _, p := range pipelines {
		s.Produced += p.Produced
		s.Delivered += p.Delivered
		s.DeadLettered += p.DeadLettered
		s.StillInRetry += p.StillInRetry
		s.NotYetConsumed += p.NotYetConsumed
		s.Lost += p.Lost
		s.DuplicateEffects += p.DuplicateEffects
	}
	for _, c := range scales {
		e := ScaleEvent{Pipeline: c.Pipeline, AtSecond: round1(c.At.Sub(runStart).Seconds()), From: c.From, To: c.To}
		if c.To > c.From {
			s.ScaleUps = append(s.ScaleUps, e)
		} else {
			s.ScaleDowns = append(s.ScaleDowns, e)
		}
	}
	s.Drained = s.StillInRetry == 0 && s.NotYetConsumed == 0
	s.OK = s.Lost == 0 && s.DuplicateEffects == 0
	return s
}

// ExitCode is non-zero when anything was lost or applied twice.
func (s Summary) ExitCode() int {
	switch {
	case !s.OK:
		return 1
	case s.Interrupted:
		return 130
	}
	return 0
}

// lagSample is the total lag of all pipelines at one moment.
type lagSample struct {
	At  time.Time
	Lag int64
}

// drainTime is how long after spikeEnd the lag first fell to at most
// threshold; false when it never did in the samples.
func drainTime(samples []lagSample, spikeEnd time.Time, threshold int64) (time.Duration, bool) {
	for _, s := range samples {
		if !s.At.Before(spikeEnd) && s.Lag <= threshold {
			return s.At.Sub(spikeEnd), true
		}
	}
	return 0, false
}

// round1 rounds to tenths.
func round1(v float64) float64 { return math.Round(v*10) / 10 }

// print writes the summary for a person.
func (s Summary) print(out io.Writer) {
	var b strings.Builder
	w := &b
	line := strings.Repeat("─", 72)
	fmt.Fprintf(w, "\n%s\nSluice demo summary", line)
	if s.Interrupted {
		fmt.Fprint(w, " (interrupted: records still in flight are not lost)")
	}
	fmt.Fprintf(w, "\n%s\n", line)
	for _, p := range s.Pipelines {
		if len(s.Pipelines) > 1 {
			fmt.Fprintf(w, "pipeline %s\n", p.Name)
		}
		fmt.Fprintf(w, "  records produced                  %7d   (%d poison pills among them)\n", p.Produced, p.PoisonSent)
		fmt.Fprintf(w, "  delivered once                    %7d\n", p.DeliveredOnce)
		if p.RedeliveriesCounted {
			fmt.Fprintf(w, "  delivered more than once          %7d   (at-least-once redeliveries: %d, no effect thanks to the idempotency key)\n", p.DeliveredMoreThanOnce, p.Redeliveries)
		} else {
			fmt.Fprintf(w, "  delivered more than once          %7s   (this sink can't tell; its ON CONFLICT DO NOTHING makes them no-ops)\n", "?")
		}
		fmt.Fprintf(w, "  duplicate effects                 %7d   (must be 0)\n", p.DuplicateEffects)
		fmt.Fprintf(w, "  dead-lettered                     %7d\n", p.DeadLettered)
		reasons := slices.Sorted(maps.Keys(p.DeadLetteredByReason))
		for _, r := range reasons {
			fmt.Fprintf(w, "    %-40s %6d\n", r, p.DeadLetteredByReason[r])
		}
		switch {
		case !p.DLQMatches:
			fmt.Fprintf(w, "    ≠ the poison pills (%d) + the records that exhausted their retries (%d):\n", p.PoisonSent, p.ExhaustedRetries)
		case p.NotYetConsumed+p.StillInRetry > 0:
			fmt.Fprintf(w, "    = the poison pills + the records that exhausted their retries, of those that arrived\n")
		default:
			fmt.Fprintf(w, "    = %d poison pills + %d records that exhausted their retries\n", p.PoisonSent, p.ExhaustedRetries)
		}
		for _, m := range p.DLQMismatch {
			fmt.Fprintf(w, "      %s\n", m)
		}
		fmt.Fprintf(w, "  still in retry topics             %7d\n", p.StillInRetry)
		if p.NotYetConsumed > 0 {
			fmt.Fprintf(w, "  not consumed yet                  %7d\n", p.NotYetConsumed)
		}
		if len(p.PendingIDs) > 0 && !s.Interrupted {
			fmt.Fprintf(w, "    e.g. %s\n", strings.Join(p.PendingIDs, "; "))
		}
		fmt.Fprintf(w, "  lost                              %7d   (must be 0)\n", p.Lost)
		if len(p.LostIDs) > 0 {
			fmt.Fprintf(w, "    e.g. %s\n", strings.Join(p.LostIDs, ", "))
		}
	}
	fmt.Fprintf(w, "  max lag                           %7d records\n", s.MaxLag)
	if s.DrainSeconds != nil {
		fmt.Fprintf(w, "  time to drain after the spike     %6.1fs\n", *s.DrainSeconds)
	} else {
		fmt.Fprintf(w, "  time to drain after the spike         –   (the lag did not fall back)\n")
	}
	fmt.Fprintf(w, "  scale-ups                         %7d   %s\n", len(s.ScaleUps), scaleList(s.ScaleUps, len(s.Pipelines) > 1))
	fmt.Fprintf(w, "  scale-downs                       %7d   %s\n", len(s.ScaleDowns), scaleList(s.ScaleDowns, len(s.Pipelines) > 1))
	fmt.Fprintf(w, "  worker restarts (pod runner)      %7d", s.WorkerRestarts)
	if s.ChaosKills > 0 {
		fmt.Fprintf(w, "   (%d SIGKILLed by --chaos)", s.ChaosKills)
	}
	fmt.Fprintln(w)
	if s.FirstDeliverySeconds != nil {
		fmt.Fprintf(w, "  first record delivered            %6.1fs after start\n", *s.FirstDeliverySeconds)
	}
	fmt.Fprintln(w, line)
	switch {
	case !s.OK:
		fmt.Fprintf(w, "FAILED: %d lost, %d duplicate effects\n", s.Lost, s.DuplicateEffects)
	case !s.Drained:
		fmt.Fprintf(w, "OK: nothing lost, nothing applied twice (%d records were still on their way)\n", s.StillInRetry+s.NotYetConsumed)
	default:
		fmt.Fprintf(w, "OK: produced %d = delivered %d + dead-lettered %d; nothing lost, nothing applied twice\n", s.Produced, s.Delivered, s.DeadLettered)
	}
	_, _ = io.WriteString(out, b.String())
}

func scaleList(es []ScaleEvent, named bool) string {
	parts := make([]string, 0, len(es))
	sort.SliceStable(es, func(i, j int) bool { return es[i].AtSecond < es[j].AtSecond })
	for _, e := range es {
		p := fmt.Sprintf("%d→%d at %.0fs", e.From, e.To, e.AtSecond)
		if named {
			p = e.Pipeline + " " + p
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

// writeJSON writes the summary to path.
func (s Summary) writeJSON(path string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
