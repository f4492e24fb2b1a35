package controllers

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

func TestClaimsFirst(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	sp := func(ns, name string, created time.Time, running bool) *sluicev1.StreamPipeline {
		p := &sluicev1.StreamPipeline{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(created)}}
		if running {
			p.Status.Conditions = []metav1.Condition{{Type: sluicev1.ConditionTopicsReady, Status: metav1.ConditionTrue}}
		}
		return p
	}
	cases := []struct {
		name string
		a, b *sluicev1.StreamPipeline
		want bool
	}{
		{"older first", sp("x", "a", t0, false), sp("x", "b", t0.Add(time.Second), false), true},
		{"newer second", sp("x", "a", t0.Add(time.Second), false), sp("x", "b", t0, false), false},
		{"a running pipeline keeps its claim against an older one that doesn't run", sp("z", "a", t0.Add(time.Hour), true), sp("a", "b", t0, false), true},
		{"same second: by namespace and name", sp("a", "z", t0, false), sp("b", "a", t0, false), true},
		{"same second, the other way round", sp("b", "a", t0, false), sp("a", "z", t0, false), false},
	}
	for _, tc := range cases {
		if got := claimsFirst(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: claimsFirst = %v, want %v", tc.name, got, tc.want)
		}
		if claimsFirst(tc.a, tc.b) == claimsFirst(tc.b, tc.a) {
			t.Errorf("%s: exactly one of two pipelines must go first", tc.name)
		}
	}
}

func TestClaimsOfAPipeline(t *testing.T) {
	sp := &sluicev1.StreamPipeline{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "orders"}}
	sp.Spec.Kafka.BootstrapServers = []string{"Kafka-1:9092", "kafka-0:9092", "kafka-0:9092"}
	sp.Spec.Delivery.Retry.Attempts = new(int32(2))
	got := claimIndexValues(sp)
	want := []string{
		"kafka-0:9092,kafka-1:9092|group|shop.orders",
		"kafka-0:9092,kafka-1:9092|topic|shop.orders.retry.1",
		"kafka-0:9092,kafka-1:9092|topic|shop.orders.retry.2",
		"kafka-0:9092,kafka-1:9092|topic|shop.orders.dlq",
	}
	if len(got) != len(want) {
		t.Fatalf("claims = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("claim %d = %q, want %q", i, got[i], want[i])
		}
	}
}
