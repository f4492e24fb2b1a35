package scaling

import (
	"math"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

// unknown is a lag sample whose read failed.
const unknown = -1

// step is one lag sample, taken `after` the previous one, and the decision
// expected for it.
type step struct {
	after  time.Duration
	lag    int64 // or unknown
	want   int32
	reason string
}

// policy is the API defaults with a 5m window, changed by the case.
func policy(change func(*Policy)) Policy {
	p := Policy{Min: 1, Max: 10, LagThreshold: 1000, MaxScaleUpStep: 4, ScaleDownStabilization: 5 * time.Minute}
	if change != nil {
		change(&p)
	}
	return p
}

// drive plays samples through the policy the way the operator does: the
// Deployment takes every decision before the next sample.
func drive(t *testing.T, p Policy, partitions, current int32, steps []step) {
	t.Helper()
	var st State
	now := t0
	for i, s := range steps {
		now = now.Add(s.after)
		in := Input{Now: now, Current: current, Partitions: partitions, TotalLag: s.lag, LagKnown: s.lag != unknown}
		d := p.Decide(in, &st)
		if d.Desired != s.want || d.Reason != s.reason {
			t.Fatalf("step %d (+%v, lag %d, current %d): got %d %s (%q), want %d %s",
				i, now.Sub(t0), s.lag, current, d.Desired, d.Reason, d.Message, s.want, s.reason)
		}
		if d.Message == "" {
			t.Errorf("step %d: empty message", i)
		}
		current = d.Desired
	}
}

func TestDecide(t *testing.T) {
	m := time.Minute
	cases := []struct {
		name       string
		policy     Policy
		partitions int32
		current    int32
		steps      []step
	}{
		{
			name: "no lag stays at min", policy: policy(nil), partitions: 12, current: 1,
			steps: []step{{0, 0, 1, ReasonSteady}, {m, 0, 1, ReasonSteady}},
		},
		{
			name:   "a share group scales past the partition count, to maxReplicas",
			policy: policy(func(p *Policy) { p.Max, p.MaxScaleUpStep, p.SharedPartitions = 8, 8, true }), partitions: 2, current: 1,
			steps: []step{{0, 90000, 8, ReasonLagAboveTarget}},
		},
		{
			name: "lag within the target is steady", policy: policy(nil), partitions: 12, current: 2,
			steps: []step{{0, 1500, 2, ReasonSteady}, {m, 2000, 2, ReasonSteady}},
		},
		{
			name:   "lag spike scales up by bounded steps to the target",
			policy: policy(func(p *Policy) { p.MaxScaleUpStep = 2 }), partitions: 12, current: 1,
			steps: []step{
				{0, 9000, 3, ReasonLagAboveTarget},
				{2 * time.Second, 9000, 5, ReasonLagAboveTarget},
				{2 * time.Second, 9000, 7, ReasonLagAboveTarget},
				{2 * time.Second, 9000, 9, ReasonLagAboveTarget},
				{2 * time.Second, 9000, 9, ReasonSteady},
			},
		},
		{
			name:   "partitions below max cap the replicas",
			policy: policy(func(p *Policy) { p.Max = 20 }), partitions: 4, current: 1,
			steps: []step{{0, 100_000, 4, ReasonLagAboveTarget}, {m, 100_000, 4, ReasonAtMaximum}},
		},
		{
			name:   "max caps when the partition count is unknown",
			policy: policy(func(p *Policy) { p.MaxScaleUpStep = 100 }), partitions: 0, current: 1,
			steps: []step{{0, 100_000, 10, ReasonLagAboveTarget}, {m, 100_000, 10, ReasonAtMaximum}},
		},
		{
			name:   "partitions are a hard ceiling, even over min",
			policy: policy(func(p *Policy) { p.Min = 8 }), partitions: 4, current: 8,
			steps: []step{{0, 0, 4, ReasonBounds}, {m, 0, 4, ReasonSteady}},
		},
		{
			name:   "min 0 scales to zero only after a window without lag",
			policy: policy(func(p *Policy) { p.Min = 0 }), partitions: 12, current: 2,
			steps: []step{
				{0, 0, 2, ReasonStabilizing},
				{m, 0, 2, ReasonStabilizing},
				{3 * m, 0, 2, ReasonStabilizing},
				{m, 0, 0, ReasonScaledToZero}, // 5m since the first sample
				{m, 0, 0, ReasonSteady},
			},
		},
		{
			name:   "min 0 comes back to one at once when lag appears",
			policy: policy(func(p *Policy) { p.Min = 0 }), partitions: 12, current: 0,
			steps: []step{
				{0, 0, 0, ReasonSteady},
				{2 * time.Second, 5, 1, ReasonLagAppeared},
				{2 * time.Second, 0, 1, ReasonStabilizing},
			},
		},
		{
			name:   "from zero, a large lag still steps",
			policy: policy(func(p *Policy) { p.Min = 0 }), partitions: 12, current: 0,
			steps: []step{{0, 50_000, 4, ReasonLagAppeared}, {2 * time.Second, 50_000, 8, ReasonLagAboveTarget}},
		},
		{
			name:   "a lag that never reaches 0 never scales to zero",
			policy: policy(func(p *Policy) { p.Min = 0 }), partitions: 12, current: 1,
			steps: []step{{0, 3, 1, ReasonSteady}, {10 * m, 1, 1, ReasonSteady}, {10 * m, 1, 1, ReasonSteady}},
		},
		{
			name: "lag unknown holds", policy: policy(nil), partitions: 12, current: 5,
			steps: []step{{0, unknown, 5, ReasonLagUnknown}, {m, unknown, 5, ReasonLagUnknown}},
		},
		{
			name:   "lag unknown at zero stays at zero",
			policy: policy(func(p *Policy) { p.Min = 0 }), partitions: 12, current: 0,
			steps: []step{{0, unknown, 0, ReasonLagUnknown}},
		},
		{
			name:   "lag unknown still obeys a lowered max",
			policy: policy(func(p *Policy) { p.Max = 3 }), partitions: 12, current: 5,
			steps: []step{{0, unknown, 3, ReasonBounds}, {m, unknown, 3, ReasonLagUnknown}},
		},
		{
			name:   "lag unknown still obeys a raised min",
			policy: policy(func(p *Policy) { p.Min = 2 }), partitions: 12, current: 0,
			steps: []step{{0, unknown, 2, ReasonBounds}},
		},
		{
			name: "zero replicas with min 1 go to min", policy: policy(nil), partitions: 12, current: 0,
			steps: []step{{0, 0, 1, ReasonBounds}},
		},
		{
			name:   "a raised min applies at once, not by steps",
			policy: policy(func(p *Policy) { p.Min = 9; p.MaxScaleUpStep = 1 }), partitions: 12, current: 2,
			steps: []step{{0, 0, 9, ReasonBounds}},
		},
		{
			name:   "a lowered max applies at once, without stabilization",
			policy: policy(func(p *Policy) { p.Max = 4 }), partitions: 12, current: 8,
			steps: []step{{0, 8000, 4, ReasonBounds}, {m, 8000, 4, ReasonAtMaximum}},
		},
		{
			name:   "scale-down waits for the window, then goes to the highest recommendation in it in one go",
			policy: policy(nil), partitions: 12, current: 8,
			steps: []step{
				{0, 8000, 8, ReasonSteady},
				{m, 3000, 8, ReasonStabilizing},    // 3 @1m
				{m, 5000, 8, ReasonStabilizing},    // 5 @2m
				{m, 1000, 8, ReasonStabilizing},    // 1 @3m
				{m, 1000, 8, ReasonStabilizing},    // 1 @4m
				{m, 1000, 5, ReasonLagBelowTarget}, // 8 @0 is out: 5 @2m is the highest
				{m, 1000, 5, ReasonStabilizing},    // @6m: 5 @2m still in
				{m, 1000, 1, ReasonLagBelowTarget}, // @7m: only 1s left
			},
		},
		{
			name:   "a new state (operator restart) waits a full window before scaling down",
			policy: policy(nil), partitions: 12, current: 8,
			steps: []step{
				{0, 0, 8, ReasonStabilizing},
				{4 * m, 0, 8, ReasonStabilizing},
				{m, 0, 1, ReasonLagBelowTarget},
			},
		},
		{
			name:   "a lag outage is no evidence for scaling down",
			policy: policy(nil), partitions: 12, current: 6,
			steps: []step{
				{0, 6000, 6, ReasonSteady},
				{m, unknown, 6, ReasonLagUnknown},
				{4 * m, unknown, 6, ReasonLagUnknown},
				{m, 0, 6, ReasonStabilizing}, // @6m: the outage held 6 until @5m+5m
				{3 * m, 0, 6, ReasonStabilizing},
				{m, 0, 1, ReasonLagBelowTarget},
			},
		},
		{
			name:   "a long gap between samples still waits a window",
			policy: policy(nil), partitions: 12, current: 6,
			steps: []step{
				{0, 6000, 6, ReasonSteady},
				{time.Hour, 0, 6, ReasonStabilizing},
				{5 * m, 0, 1, ReasonLagBelowTarget},
			},
		},
		{
			name:   "no stabilization window scales down at once",
			policy: policy(func(p *Policy) { p.ScaleDownStabilization = 0 }), partitions: 12, current: 6,
			steps: []step{{0, 2000, 2, ReasonLagBelowTarget}},
		},
		{
			name: "a huge lag does not overflow", policy: policy(nil), partitions: 12, current: 10,
			steps: []step{{0, math.MaxInt64, 10, ReasonAtMaximum}},
		},
		{
			name: "a negative lag counts as none", policy: policy(nil), partitions: 12, current: 1,
			steps: []step{{0, -5, 1, ReasonSteady}},
		},
		{
			name:   "an invalid policy is made safe rather than dividing by zero",
			policy: Policy{Min: -1, Max: 0, LagThreshold: 0, MaxScaleUpStep: 0}, partitions: 0, current: 0,
			steps: []step{{0, 5, 1, ReasonLagAppeared}, {time.Second, 0, 0, ReasonScaledToZero}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			drive(t, tc.policy, tc.partitions, tc.current, tc.steps)
		})
	}
}

// TestTransactionMarkerLagKeepsOneReplica pins down what a lag that is only
// transaction markers does: one record per partition reads as lag, so a
// min-0 pipeline never scales to zero. The operator avoids it by measuring to
// the last stable offset (see lag.Compute).
func TestTransactionMarkerLagKeepsOneReplica(t *testing.T) {
	p := policy(func(p *Policy) { p.Min = 0 })
	steps := []step{{0, 12, 1, ReasonSteady}}
	for range 20 {
		steps = append(steps, step{time.Minute, 12, 1, ReasonSteady})
	}
	drive(t, p, 12, 1, steps)
}

// TestFlappingLagDoesNotOscillate feeds a lag that alternates between high
// and zero on every sample for 20 minutes: the policy climbs to the target in
// bounded steps and stays there, where a policy without a window would change
// the Deployment on every sample.
func TestFlappingLagDoesNotOscillate(t *testing.T) {
	changes := func(p Policy) (n int, last int32) {
		var st State
		current := int32(1)
		for i := range 600 { // every 2s for 20 minutes
			lag := int64(0)
			if i%2 == 0 {
				lag = 10_000
			}
			d := p.Decide(Input{Now: t0.Add(time.Duration(i) * 2 * time.Second), Current: current, Partitions: 12, TotalLag: lag, LagKnown: true}, &st)
			if d.Desired != current {
				n++
			}
			current = d.Desired
		}
		return n, current
	}

	n, last := changes(policy(nil))
	if n != 3 || last != 10 { // 1 → 5 → 9 → 10
		t.Errorf("with a window: %d changes ending at %d, want 3 ending at 10", n, last)
	}
	if n, _ := changes(policy(func(p *Policy) { p.ScaleDownStabilization = 0 })); n < 500 {
		t.Errorf("without a window the same input made only %d changes; the test no longer shows anything", n)
	}
}

func TestStateStaysBounded(t *testing.T) {
	t.Run("one entry per distinct replica count", func(t *testing.T) {
		p := policy(func(p *Policy) { p.Max = 1000; p.ScaleDownStabilization = time.Hour })
		var st State
		x := uint32(1)
		for i := range 100_000 {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			p.Decide(Input{Now: t0.Add(time.Duration(i) * time.Second), Current: 1000, TotalLag: int64(x % 1_000_000), LagKnown: true}, &st)
			if len(st.recommendations) > 1001 {
				t.Fatalf("sample %d: %d recommendations", i, len(st.recommendations))
			}
		}
	})
	t.Run("hard cap keeps the highest", func(t *testing.T) {
		p := policy(func(p *Policy) { p.Max = 5000; p.ScaleDownStabilization = 24 * time.Hour })
		var st State
		for i := range 5000 { // strictly falling lag: every target distinct
			d := p.Decide(Input{Now: t0.Add(time.Duration(i) * time.Second), Current: 5000, TotalLag: int64(5000-i) * 1000, LagKnown: true}, &st)
			if d.Desired != 5000 {
				t.Fatalf("sample %d: scaled down to %d within the window", i, d.Desired)
			}
		}
		if len(st.recommendations) != maxRecommendations || st.recommendations[0].replicas != 5000 {
			t.Errorf("%d recommendations, highest %d", len(st.recommendations), st.recommendations[0].replicas)
		}
	})
	t.Run("old recommendations are pruned", func(t *testing.T) {
		p := policy(nil)
		var st State
		for i := range 100 {
			p.Decide(Input{Now: t0.Add(time.Duration(i) * time.Minute), Current: 10, TotalLag: int64(10-i%10) * 1000, LagKnown: true}, &st)
		}
		for _, r := range st.recommendations {
			if !r.at.After(t0.Add(99*time.Minute - 5*time.Minute)) {
				t.Errorf("recommendation at %v is older than the window", r.at)
			}
		}
	})
}

func TestDecideWithoutStateNeverScalesDown(t *testing.T) {
	d := policy(nil).Decide(Input{Now: t0, Current: 6, TotalLag: 0, LagKnown: true}, nil)
	if d.Desired != 6 || d.Reason != ReasonStabilizing {
		t.Errorf("got %d %s", d.Desired, d.Reason)
	}
}

func TestDecideClockGoingBackwards(t *testing.T) {
	p := policy(nil)
	var st State
	p.Decide(Input{Now: t0.Add(time.Hour), Current: 6, TotalLag: 6000, LagKnown: true}, &st)
	d := p.Decide(Input{Now: t0, Current: 6, TotalLag: 0, LagKnown: true}, &st)
	if d.Desired != 6 {
		t.Errorf("a clock that went back scaled down to %d", d.Desired)
	}
}

func TestMessagesCarryTheNumbers(t *testing.T) {
	cases := []struct {
		name string
		p    Policy
		in   Input
		want []string
	}{
		{"scale up names lag, need, step",
			policy(nil), Input{Current: 1, Partitions: 12, TotalLag: 9000, LagKnown: true},
			[]string{"9000 records", "9 replicas", "1000 per replica", "from 1 to 5", "at most 4 more per step"}},
		{"cap by partitions",
			policy(func(p *Policy) { p.Max = 20 }), Input{Current: 4, Partitions: 4, TotalLag: 9000, LagKnown: true},
			[]string{"9 replicas", "4 (the source topic's partition count)", "staying at 4"}},
		{"cap by max",
			policy(nil), Input{Current: 10, Partitions: 0, TotalLag: 90_000, LagKnown: true},
			[]string{"90 replicas", "10 (maxReplicas)"}},
		{"stabilizing names the window",
			policy(nil), Input{Current: 5, Partitions: 12, TotalLag: 100, LagKnown: true},
			[]string{"100 records", "needs 1 replica;", "keeping 5", "5m0s"}},
		{"lag unknown",
			policy(nil), Input{Current: 5, Partitions: 12},
			[]string{"could not be read", "keeping 5 replicas"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.Now = t0
			msg := tc.p.Decide(tc.in, &State{}).Message
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q lacks %q", msg, w)
				}
			}
		})
	}
}

func BenchmarkDecide(b *testing.B) {
	p := policy(func(p *Policy) { p.Max = 100 })
	var st State
	current := int32(1)
	i := 0
	for b.Loop() {
		lag := int64(i%200) * 500 // a saw-tooth: up steps, stabilizing, down
		d := p.Decide(Input{Now: t0.Add(time.Duration(i) * 2 * time.Second), Current: current, Partitions: 64, TotalLag: lag, LagKnown: true}, &st)
		current = d.Desired
		i++
	}
}

func TestWithinKeepsToTheDecisionBounds(t *testing.T) {
	p := Policy{Min: 2, Max: 10, LagThreshold: 100, MaxScaleUpStep: 4}
	for _, tc := range []struct {
		n, partitions, want int32
	}{
		{n: 0, partitions: 0, want: 2},   // below min
		{n: 12, partitions: 0, want: 10}, // above max
		{n: 8, partitions: 6, want: 6},   // partitions cap
		{n: 1, partitions: 1, want: 1},   // the cap wins over min
		{n: 5, partitions: 6, want: 5},
	} {
		if got := p.Within(tc.n, tc.partitions); got != tc.want {
			t.Errorf("Within(%d, %d partitions) = %d, want %d", tc.n, tc.partitions, got, tc.want)
		}
	}
	// A share group's members all read every partition: only Max caps.
	shared := p
	shared.SharedPartitions = true
	if got := shared.Within(8, 2); got != 8 {
		t.Errorf("share group: Within(8, 2 partitions) = %d, want 8", got)
	}
	if got := shared.Within(12, 2); got != 10 {
		t.Errorf("share group: Within(12, 2 partitions) = %d, want 10 (maxReplicas)", got)
	}
}
