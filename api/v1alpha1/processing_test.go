package v1alpha1_test

import (
	"testing"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// TestUnsetProcessingDefaultsFollowTheOrdering: maxInFlight and
// maxPollRecords default from the ordering; a value set is kept.
func TestUnsetProcessingDefaultsFollowTheOrdering(t *testing.T) {
	cases := []struct {
		name                   string
		ordering               sluicev1.Ordering
		maxInFlight, maxPoll   *int32
		wantInFlight, wantPoll int32
	}{
		{"nothing set", "", nil, nil, 1, 100},
		{"Partition", sluicev1.OrderingPartition, nil, nil, 1, 100},
		{"Partition, maxPollRecords: 7", sluicev1.OrderingPartition, nil, new(int32(7)), 1, 7},
		{"Key", sluicev1.OrderingKey, nil, nil, 64, 256},
		{"Unordered", sluicev1.OrderingUnordered, nil, nil, 64, 256},
		{"Key, maxInFlight: 10 (a poll holds at least 100)", sluicev1.OrderingKey, new(int32(10)), nil, 10, 100},
		{"Key, maxInFlight: 25", sluicev1.OrderingKey, new(int32(25)), nil, 25, 100},
		{"Key, maxInFlight: 26", sluicev1.OrderingKey, new(int32(26)), nil, 26, 104},
		{"Unordered, maxInFlight: 4096", sluicev1.OrderingUnordered, new(int32(4096)), nil, 4096, 16384},
		{"Key, maxPollRecords: 64", sluicev1.OrderingKey, nil, new(int32(64)), 64, 64},
	}
	for _, tc := range cases {
		sp := &sluicev1.StreamPipeline{}
		sp.Spec.Processing = sluicev1.ProcessingSpec{Ordering: tc.ordering, MaxInFlight: tc.maxInFlight}
		sp.Spec.Consumer.MaxPollRecords = tc.maxPoll
		if got, poll := sp.MaxInFlight(), sp.MaxPollRecords(); got != tc.wantInFlight || poll != tc.wantPoll {
			t.Errorf("%s: maxInFlight %d, maxPollRecords %d; want %d, %d", tc.name, got, poll, tc.wantInFlight, tc.wantPoll)
		}
		if sp.MaxPollRecords() < sp.MaxInFlight() {
			t.Errorf("%s: a poll of %d can't keep %d in flight", tc.name, sp.MaxPollRecords(), sp.MaxInFlight())
		}
	}
}
