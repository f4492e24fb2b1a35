package controllers

import (
	"errors"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/lag"
	"github.com/sluice-dev/sluice/internal/scaling"
)

// TestNeedsReconcile pins when a lag sample wakes the reconciler: a replica
// decision or a lag condition at once (act); figures, the lag going to or from
// 0 included, at most once per sync period, and the first figures (refresh).
func TestNeedsReconcile(t *testing.T) {
	const period = 10 * time.Second
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	view := func(total int64) *lagView {
		return &lagView{At: t0, Lag: lag.Lag{Total: total, MaxPartition: total}}
	}
	params := observeParams{lagCriticalSeconds: 300}

	cases := []struct {
		name      string
		published *lagView // nil: never published
		view      *lagView
		after     time.Duration // since the last publish
		desired   int32         // applied is 1
		suspended bool
		want      wake
	}{
		{"never published", nil, view(0), 0, 1, false, refreshWake},
		{"never published, replica decision changed", nil, view(5000), 0, 2, false, actWake},
		{"same figures, within the period", view(5), view(5), 2 * time.Second, 1, false, noWake},
		{"same figures, after the period", view(5), view(5), period, 1, false, noWake},
		{"changed figures, within the period", view(5), view(7), 2 * time.Second, 1, false, noWake},
		{"changed figures, after the period", view(5), view(7), period, 1, false, refreshWake},
		{"lag appeared, within the period", view(0), view(2), 2 * time.Second, 1, false, noWake},
		{"lag drained, within the period", view(2), view(0), 2 * time.Second, 1, false, noWake},
		{"lag drained, after the period", view(2), view(0), period, 1, false, refreshWake},
		{"replica decision changed", view(5), view(5), 0, 2, false, actWake},
		{"replica decision changed while suspended", view(5), view(5), 0, 2, true, noWake},
		{"lag became unmeasurable: a condition changed", view(5), &lagView{At: t0, Err: errors.New("brokers down")}, 0, 1, false, actWake},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := params
			p.suspended = c.suspended
			ob := &observed{
				params:        p,
				applied:       1,
				appliedKnown:  true,
				view:          c.view,
				decision:      &scaling.Decision{Desired: c.desired},
				published:     t0,
				publishedView: c.published,
			}
			if got := ob.needsReconcile(t0.Add(c.after), period); got != c.want {
				t.Errorf("needsReconcile = %v, want %v", got, c.want)
			}
		})
	}
}
