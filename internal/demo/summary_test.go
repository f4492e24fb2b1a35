package demo

import (
	"testing"
	"time"
)

// outcome builds a pipeline's end state: records r-0..r-4 on partition 0 at
// offsets 0..4 of topic "src"; r-4 is a poison pill.
func outcome() pipelineOutcome {
	var produced []producedRecord
	for i := range 5 {
		kind := kindGood
		if i == 4 {
			kind = kindNoKey
		}
		produced = append(produced, producedRecord{ID: "r-" + string(rune('0'+i)), Kind: kind, Partition: 0, Offset: int64(i)})
	}
	return pipelineOutcome{
		Name: "p", SourceTopic: "src", Produced: produced, RetryAttempts: 3, SinkCountsRedeliveries: true,
		Keys: map[string]keyStats{
			"r-0": {Deliveries: 1, Effect: "r-0"},
			"r-1": {Deliveries: 2, Effect: "r-1"},              // redelivered after a crash
			"r-2": {Deliveries: 1, Failures: 1, Effect: "r-2"}, // retried once
			"r-3": {Failures: 4},                               // exhausted
		},
		Effects:   map[string]int{"r-0": 1, "r-1": 1, "r-2": 1},
		Dead:      []parkedRecord{{ID: "r-3", Class: "transient", Message: "HTTP 503: shard unavailable"}, {ID: "r-4", Class: "poison", Message: "idempotency key: record has no header"}},
		Copies:    []parkedRecord{{ID: "r-2", Topic: "src.retry.1"}, {ID: "r-3", Topic: "src.retry.1"}},
		Committed: map[string]map[int32]int64{"src": {0: 5}, "src.retry.1": {0: 2}},
	}
}

func TestAccountSortsEveryRecord(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(*pipelineOutcome)
		check func(t *testing.T, s PipelineSummary)
	}{
		{"everything delivered or dead-lettered", func(*pipelineOutcome) {}, func(t *testing.T, s PipelineSummary) {
			if s.Produced != 5 || s.Delivered != 3 || s.DeadLettered != 2 || s.Lost != 0 || s.DuplicateEffects != 0 {
				t.Errorf("%+v", s)
			}
			if s.DeliveredOnce != 2 || s.DeliveredMoreThanOnce != 1 || s.Redeliveries != 1 {
				t.Errorf("once %d, more %d, redeliveries %d", s.DeliveredOnce, s.DeliveredMoreThanOnce, s.Redeliveries)
			}
			if !s.DLQMatches || s.PoisonSent != 1 || s.ExhaustedRetries != 1 {
				t.Errorf("DLQ check: %v %v, poison %d exhausted %d", s.DLQMatches, s.DLQMismatch, s.PoisonSent, s.ExhaustedRetries)
			}
			if s.DeadLetteredByReason["transient: HTTP 503, retries exhausted"] != 1 || s.DeadLetteredByReason["poison: no idempotency key"] != 1 {
				t.Errorf("reasons %v", s.DeadLetteredByReason)
			}
		}},
		{"a record the sink never saw, committed past: lost", func(o *pipelineOutcome) {
			delete(o.Effects, "r-0")
			delete(o.Keys, "r-0")
		}, func(t *testing.T, s PipelineSummary) {
			if s.Lost != 1 || s.LostIDs[0] != "r-0" {
				t.Errorf("lost %d %v", s.Lost, s.LostIDs)
			}
		}},
		{"not committed past yet: on its way, not lost", func(o *pipelineOutcome) {
			delete(o.Effects, "r-0")
			o.Committed["src"][0] = 0
		}, func(t *testing.T, s PipelineSummary) {
			if s.Lost != 0 || s.NotYetConsumed != 1 {
				t.Errorf("lost %d, not consumed %d", s.Lost, s.NotYetConsumed)
			}
		}},
		{"waiting in a retry topic: on its way", func(o *pipelineOutcome) {
			delete(o.Effects, "r-2")
			o.Committed["src.retry.1"][0] = 0
		}, func(t *testing.T, s PipelineSummary) {
			if s.Lost != 0 || s.StillInRetry != 1 {
				t.Errorf("lost %d, in retry %d", s.Lost, s.StillInRetry)
			}
		}},
		{"an effect applied twice", func(o *pipelineOutcome) { o.Effects["r-1"] = 2 }, func(t *testing.T, s PipelineSummary) {
			if s.DuplicateEffects != 1 {
				t.Errorf("duplicate effects %d", s.DuplicateEffects)
			}
		}},
		{"a poison pill missing from the DLQ", func(o *pipelineOutcome) { o.Dead = o.Dead[:1] }, func(t *testing.T, s PipelineSummary) {
			if s.DLQMatches || s.Lost != 1 {
				t.Errorf("matches %v, lost %d", s.DLQMatches, s.Lost)
			}
		}},
		{"a good record dead-lettered without exhausting its retries", func(o *pipelineOutcome) {
			o.Keys["r-3"] = keyStats{Failures: 2}
		}, func(t *testing.T, s PipelineSummary) {
			if s.DLQMatches || len(s.DLQMismatch) != 1 {
				t.Errorf("matches %v: %v", s.DLQMatches, s.DLQMismatch)
			}
		}},
		{"a record both delivered and dead-lettered counts as delivered", func(o *pipelineOutcome) {
			o.Dead = append(o.Dead, parkedRecord{ID: "r-1", Class: "transient"})
		}, func(t *testing.T, s PipelineSummary) {
			if s.Delivered != 3 || s.DeadLettered != 2 || !s.DLQMatches || s.DeadLetterCopies != 3 {
				t.Errorf("delivered %d dead %d matches %v %v", s.Delivered, s.DeadLettered, s.DLQMatches, s.DLQMismatch)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := outcome()
			tc.edit(&o)
			tc.check(t, account(o))
		})
	}
}

func TestSummaryExitCode(t *testing.T) {
	ok := summarize([]PipelineSummary{{Produced: 3, Delivered: 3}}, nil, time.Now())
	lost := summarize([]PipelineSummary{{Produced: 3, Delivered: 2, Lost: 1}}, nil, time.Now())
	dup := summarize([]PipelineSummary{{Produced: 3, Delivered: 3, DuplicateEffects: 1}}, nil, time.Now())
	interrupted := ok
	interrupted.Interrupted = true
	for _, tc := range []struct {
		name string
		s    Summary
		want int
	}{{"ok", ok, 0}, {"lost", lost, 1}, {"duplicate", dup, 1}, {"interrupted", interrupted, 130}} {
		if got := tc.s.ExitCode(); got != tc.want {
			t.Errorf("%s: exit code %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestDrainTimeIsFromTheSpikeEndToLowLag(t *testing.T) {
	t0 := time.Unix(0, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	samples := []lagSample{{at(9), 50}, {at(10), 3000}, {at(12), 900}, {at(15), 80}, {at(16), 20}}
	if d, ok := drainTime(samples, at(10), 100); !ok || d != 5*time.Second {
		t.Errorf("drainTime = %v %v, want 5s", d, ok)
	}
	if _, ok := drainTime(samples[:3], at(10), 100); ok {
		t.Error("the lag never fell, yet a drain time")
	}
}

func TestScaleEventsSplitIntoUpsAndDowns(t *testing.T) {
	t0 := time.Now()
	s := summarize(nil, []scaleChange{{At: t0.Add(20 * time.Second), From: 1, To: 5}, {At: t0.Add(40 * time.Second), From: 5, To: 1}}, t0)
	if len(s.ScaleUps) != 1 || len(s.ScaleDowns) != 1 || s.ScaleUps[0].AtSecond != 20 {
		t.Errorf("ups %v downs %v", s.ScaleUps, s.ScaleDowns)
	}
}

func TestAccountChecksTheDLQOnlyForRecordsThatArrived(t *testing.T) {
	o := outcome()
	o.Dead = o.Dead[:1]       // the poison pill r-4 is not in the DLQ yet…
	o.Committed["src"][0] = 4 // …because it was not consumed yet
	s := account(o)
	if !s.DLQMatches || s.NotYetConsumed != 1 || s.Lost != 0 {
		t.Errorf("matches %v %v, not consumed %d, lost %d", s.DLQMatches, s.DLQMismatch, s.NotYetConsumed, s.Lost)
	}
}
