package replay

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/worker/failure"
)

func deadLetter(class, msg string, origPartition, origOffset, redrives string, ts time.Time) *kgo.Record {
	r := &kgo.Record{Topic: "orders.dlq", Timestamp: ts, Value: []byte("v")}
	add := func(k, v string) {
		if v != "" {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
		}
	}
	add(failure.HeaderOriginalTopic, "orders")
	add(failure.HeaderOriginalPartition, origPartition)
	add(failure.HeaderOriginalOffset, origOffset)
	add(failure.HeaderErrorClass, class)
	add(failure.HeaderErrorMessage, msg)
	add(failure.HeaderRedriveCount, redrives)
	return r
}

func TestDecide(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	p2, from, to := int32(2), int64(100), int64(200)
	pill := deadLetter("poison", "field amount: not a number", "2", "150", "", t0)
	transient := deadLetter("transient", "503 from billing", "1", "10", "", t0)
	control := &kgo.Record{Attrs: kgo.NewRecordAttrs(kgo.RecordAttrsOpts{Control: true, Transactional: true}), Timestamp: t0}
	for _, tc := range []struct {
		name string
		sel  Selection
		rec  *kgo.Record
		want Action
	}{
		{"empty selection copies every data record", Selection{}, transient, Copy},
		{"a transaction marker is never copied", Selection{}, control, Skip},
		{"class matches", Selection{Classes: []string{"poison"}}, pill, Copy},
		{"class does not match", Selection{Classes: []string{"poison"}}, transient, Skip},
		{"a record without a class is not of a class", Selection{Classes: []string{"poison"}}, &kgo.Record{Timestamp: t0}, Skip},
		{"message contains", Selection{MessageContains: "amount"}, pill, Copy},
		{"message does not contain", Selection{MessageContains: "amount"}, transient, Skip},
		{"since is inclusive", Selection{Since: t0}, pill, Copy},
		{"before since", Selection{Since: t0.Add(time.Millisecond)}, pill, Skip},
		{"until is exclusive", Selection{Until: t0}, pill, Skip},
		{"before until", Selection{Until: t0.Add(time.Millisecond)}, pill, Copy},
		{"original partition matches", Selection{OriginalPartition: &p2}, pill, Copy},
		{"original partition differs", Selection{OriginalPartition: &p2}, transient, Skip},
		{"original offset in range", Selection{OriginalFrom: &from, OriginalTo: &to}, pill, Copy},
		{"original offset below range", Selection{OriginalFrom: &from}, transient, Skip},
		{"original offset range needs the header", Selection{OriginalTo: &to}, &kgo.Record{Timestamp: t0}, Skip},
		{"redriven fewer times than the cap: copy", Selection{MaxRedrives: 3}, deadLetter("poison", "x", "0", "1", "2", t0), Copy},
		{"redriven as often as the cap: park", Selection{MaxRedrives: 3}, deadLetter("poison", "x", "0", "1", "3", t0), Park},
		{"a malformed redrive count is 0", Selection{MaxRedrives: 1}, deadLetter("poison", "x", "0", "1", "many", t0), Copy},
		{"parking comes after the selection", Selection{MaxRedrives: 1, Classes: []string{"transient"}}, deadLetter("poison", "x", "0", "1", "5", t0), Skip},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.sel.Decide(tc.rec); got != tc.want {
				t.Fatalf("Decide = %v, want %v", got, tc.want)
			}
		})
	}
}
