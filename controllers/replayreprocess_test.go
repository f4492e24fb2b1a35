package controllers

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/internal/replay"
)

func TestReprocessPlanMustFitTheJobsEnvironment(t *testing.T) {
	plan := func(partitions int) replay.ReprocessPlan {
		p := replay.ReprocessPlan{Replay: "shop/fix", Group: "sluice-replay.shop.fix.1234"}
		for i := range partitions {
			p.Partitions = append(p.Partitions, replay.Partition{Topic: fmt.Sprintf("sluice.shop.orders-http.dlq-%d", i%3), Partition: int32(i), Start: 1_000_000, End: 2_000_000})
		}
		return p
	}
	for _, c := range []struct {
		partitions int
		fits       bool
	}{{1, true}, {1000, true}, {3000, false}} {
		data, err := encodeReprocessPlan(plan(c.partitions))
		var invalid *replay.InvalidSelectionError
		switch {
		case c.fits && (err != nil || len(data) == 0):
			t.Errorf("%d partitions: %v, want the plan", c.partitions, err)
		case !c.fits && (!errors.As(err, &invalid) || invalid.Field != "spec.select.partitions" || !strings.Contains(err.Error(), "fewer partitions")):
			t.Errorf("%d partitions: %v, want an InvalidSelectionError on spec.select.partitions", c.partitions, err)
		}
	}
}
