package controllers

import "testing"

func TestContains(t *testing.T) {
	have := map[string]any{
		"metadata": map[string]any{"name": "d", "uid": "u1", "labels": map[string]any{"a": "1", "b": "2"}},
		"spec": map[string]any{
			"replicas": int64(3),
			"template": map[string]any{"spec": map[string]any{"containers": []any{
				map[string]any{"name": "worker", "image": "i:1", "env": []any{map[string]any{"name": "X", "value": "1"}}, "terminationMessagePath": "/dev/termination-log"},
			}}},
		},
	}
	for _, tc := range []struct {
		name string
		want any
		ok   bool
	}{
		{"a subset", map[string]any{"metadata": map[string]any{"labels": map[string]any{"a": "1"}}}, true},
		{"defaults the server added are fine", map[string]any{"spec": map[string]any{"template": map[string]any{"spec": map[string]any{"containers": []any{
			map[string]any{"name": "worker", "image": "i:1", "env": []any{map[string]any{"name": "X", "value": "1"}}}}}}}}, true},
		{"a changed scalar", map[string]any{"spec": map[string]any{"replicas": int64(4)}}, false},
		{"a missing key", map[string]any{"metadata": map[string]any{"labels": map[string]any{"c": "3"}}}, false},
		{"a list of another length", map[string]any{"spec": map[string]any{"template": map[string]any{"spec": map[string]any{"containers": []any{
			map[string]any{"name": "worker"}, map[string]any{"name": "sidecar"}}}}}}, false},
		{"a changed list element", map[string]any{"spec": map[string]any{"template": map[string]any{"spec": map[string]any{"containers": []any{
			map[string]any{"name": "worker", "image": "i:2"}}}}}}, false},
		{"null and empty ask for nothing", map[string]any{"metadata": map[string]any{"creationTimestamp": nil, "annotations": map[string]any{}}, "status": map[string]any{}}, true},
		{"a scalar where a map is", map[string]any{"metadata": "x"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := contains(have, tc.want); got != tc.ok {
				t.Fatalf("contains = %v, want %v", got, tc.ok)
			}
		})
	}
}

func TestUpToDateNeedsTheHashAndTheFields(t *testing.T) {
	want := map[string]any{"metadata": map[string]any{"name": "d"}, "spec": map[string]any{"replicas": int64(2)}}
	hash, err := appliedHash(want)
	if err != nil {
		t.Fatal(err)
	}
	existing := func(h string, replicas int64) map[string]any {
		return map[string]any{"metadata": map[string]any{"name": "d", "annotations": map[string]any{annotationApplied: h}},
			"spec": map[string]any{"replicas": replicas}}
	}
	if !upToDate(want, existing(hash, 2), hash) {
		t.Error("same hash and fields: up to date")
	}
	if upToDate(want, existing("other", 2), hash) {
		t.Error("another configuration was applied last (a field may have been dropped since): apply")
	}
	if upToDate(want, existing(hash, 5), hash) {
		t.Error("someone changed a field Sluice sets: apply")
	}
	again, _ := appliedHash(map[string]any{"spec": map[string]any{"replicas": int64(2)}, "metadata": map[string]any{"name": "d"}})
	if again != hash {
		t.Error("the hash depends on map order")
	}
}
