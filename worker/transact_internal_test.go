package worker

import (
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestPoisonedSetForgetsFinishedRecords: the transactional loop's set of
// records whose output Kafka refused keeps only what is still to be retried.
func TestPoisonedSetForgetsFinishedRecords(t *testing.T) {
	recs := []*kgo.Record{{Topic: "orders", Partition: 0, Offset: 7}, {Topic: "orders", Partition: 1, Offset: 7}}
	poisoned := map[string]error{
		poisonKey(recs[0]): errors.New("too large"),
		"orders/2/9":       errors.New("too large"), // another poll's record, not committed yet
	}
	forgetFinished(poisoned, recs)
	if _, ok := poisoned[poisonKey(recs[0])]; ok || len(poisoned) != 1 {
		t.Errorf("poisoned = %v; want only orders/2/9 left", poisoned)
	}
}
