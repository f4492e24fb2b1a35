package v1alpha1_test

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// TestStreamReplayAdmission: the API server refuses replays that can't be
// run as written, naming the field, and a replay's spec can't change.
func TestStreamReplayAdmission(t *testing.T) {
	ns := namespace
	t0 := metav1.NewTime(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	t1 := metav1.NewTime(t0.Add(time.Hour))
	five := int64(5)
	two := int64(2)
	for _, tc := range []struct {
		name, want string
		edit       func(*sluicev1.StreamReplaySpec)
	}{
		{"the defaults", "", func(*sluicev1.StreamReplaySpec) {}},
		{"a time window", "", func(s *sluicev1.StreamReplaySpec) { s.Select.Since, s.Select.Until = &t0, &t1 }},
		{"a backwards time window", "spec.select.since: Invalid value", func(s *sluicev1.StreamReplaySpec) { s.Select.Since, s.Select.Until = &t1, &t0 }},
		{"a backwards offset range", "spec.select.partitions[0].from", func(s *sluicev1.StreamReplaySpec) {
			s.Select.Partitions = []sluicev1.ReplayPartitionRange{{Partition: 0, OffsetRange: sluicev1.OffsetRange{From: &five, To: &two}}}
		}},
		{"source into itself", "spec.target", func(s *sluicev1.StreamReplaySpec) {
			s.From, s.Target = sluicev1.ReplayFromSource, sluicev1.ReplayTargetSource
		}},
		{"retry topics into the first retry topic", "spec.target", func(s *sluicev1.StreamReplaySpec) {
			s.From, s.Target = sluicev1.ReplayFromRetryTopics, sluicev1.ReplayTargetRetryTopic
		}},
		{"retry topics into the source", "", func(s *sluicev1.StreamReplaySpec) {
			s.From, s.Target = sluicev1.ReplayFromRetryTopics, sluicev1.ReplayTargetSource
		}},
		{"failure headers on the source topic", "spec.select", func(s *sluicev1.StreamReplaySpec) {
			s.From = sluicev1.ReplayFromSource
			s.Select.ErrorClasses = []sluicev1.ReplayErrorClass{"poison"}
		}},
		{"an unknown class", "spec.select.errorClasses[0]", func(s *sluicev1.StreamReplaySpec) {
			s.Select.ErrorClasses = []sluicev1.ReplayErrorClass{"fatal"}
		}},
		{"no pipeline", "spec.pipeline", func(s *sluicev1.StreamReplaySpec) { s.Pipeline = "" }},
		{"a mode not offered", "spec.mode", func(s *sluicev1.StreamReplaySpec) { s.Mode = "Reingest" }},
		{"a reprocess of the dead letters", "", func(s *sluicev1.StreamReplaySpec) { s.Mode = sluicev1.ReplayModeReprocess }},
		{"a reprocess of last hour's source records", "", func(s *sluicev1.StreamReplaySpec) {
			s.Mode, s.From, s.Select.Since = sluicev1.ReplayModeReprocess, sluicev1.ReplayFromSource, &t0
		}},
		{"a reprocess with maxRedrives", "spec.maxRedrives", func(s *sluicev1.StreamReplaySpec) {
			s.Mode, s.MaxRedrives = sluicev1.ReplayModeReprocess, new(int32(2))
		}},
		{"a reprocess that truncates", "spec.truncate", func(s *sluicev1.StreamReplaySpec) {
			s.Mode, s.Truncate = sluicev1.ReplayModeReprocess, true
		}},
		{"a redrive that truncates", "", func(s *sluicev1.StreamReplaySpec) { s.Truncate = true }},
		{"a dry run that truncates", "spec.truncate", func(s *sluicev1.StreamReplaySpec) { s.Truncate, s.DryRun = true, true }},
		{"truncating the source", "spec.truncate", func(s *sluicev1.StreamReplaySpec) {
			s.Truncate, s.From, s.Target = true, sluicev1.ReplayFromSource, sluicev1.ReplayTargetRetryTopic
		}},
		{"truncating the retry topics", "spec.truncate", func(s *sluicev1.StreamReplaySpec) {
			s.Truncate, s.From, s.Target = true, sluicev1.ReplayFromRetryTopics, sluicev1.ReplayTargetSource
		}},
		{"a rewind to a time", "", func(s *sluicev1.StreamReplaySpec) { rewind(s); s.Select.Since = &t0 }},
		{"a rewind to offsets", "", func(s *sluicev1.StreamReplaySpec) {
			rewind(s)
			s.Select.Partitions = []sluicev1.ReplayPartitionRange{{Partition: 0, OffsetRange: sluicev1.OffsetRange{From: &two}}}
		}},
		{"a rewind of some partitions to a time", "", func(s *sluicev1.StreamReplaySpec) {
			rewind(s)
			s.Select.Since = &t0
			s.Select.Partitions = []sluicev1.ReplayPartitionRange{{Partition: 1}}
		}},
		{"a dry-run rewind", "", func(s *sluicev1.StreamReplaySpec) { rewind(s); s.Select.Since = &t0; s.DryRun = true }},
		{"a rewind of the dead letters", "spec.from", func(s *sluicev1.StreamReplaySpec) {
			s.Mode, s.Select.Since = sluicev1.ReplayModeRewind, &t0
		}},
		{"a rewind to nowhere", "spec.select", func(s *sluicev1.StreamReplaySpec) { rewind(s) }},
		{"a rewind of a partition without an offset", "spec.select", func(s *sluicev1.StreamReplaySpec) {
			rewind(s)
			s.Select.Partitions = []sluicev1.ReplayPartitionRange{{Partition: 0, OffsetRange: sluicev1.OffsetRange{From: &two}}, {Partition: 1}}
		}},
		{"a rewind with an end", "spec.select", func(s *sluicev1.StreamReplaySpec) { rewind(s); s.Select.Since, s.Select.Until = &t0, &t1 }},
		{"a rewind with a limit", "spec.select", func(s *sluicev1.StreamReplaySpec) { rewind(s); s.Select.Since, s.Select.Limit = &t0, &five }},
		{"a rewind with an offset end", "spec.select", func(s *sluicev1.StreamReplaySpec) {
			rewind(s)
			s.Select.Partitions = []sluicev1.ReplayPartitionRange{{Partition: 0, OffsetRange: sluicev1.OffsetRange{From: &two, To: &five}}}
		}},
		{"a rewind with a rate limit", "spec.mode", func(s *sluicev1.StreamReplaySpec) {
			rewind(s)
			s.Select.Since, s.RateLimit = &t0, ptrTo(int32(10))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sr := &sluicev1.StreamReplay{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "r-"},
				Spec: sluicev1.StreamReplaySpec{Pipeline: "orders"}}
			tc.edit(&sr.Spec)
			err := k8s.Create(context.Background(), sr)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("admitted, want an error naming %s", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q does not name %s", err, tc.want)
			}
		})
	}

	sr := &sluicev1.StreamReplay{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "replay-fixed"}, Spec: sluicev1.StreamReplaySpec{Pipeline: "orders"}}
	if err := k8s.Create(context.Background(), sr); err != nil {
		t.Fatal(err)
	}
	sr.Spec.DryRun = true
	if err := k8s.Update(context.Background(), sr); err == nil || !strings.Contains(err.Error(), "can't be changed once created") {
		t.Fatalf("spec change: %v, want it refused", err)
	}
}

// rewind makes s a rewind of the source topic.
func rewind(s *sluicev1.StreamReplaySpec) {
	s.Mode, s.From = sluicev1.ReplayModeRewind, sluicev1.ReplayFromSource
}

func ptrTo[T any](v T) *T { return &v }
