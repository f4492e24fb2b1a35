package demo

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestOperatorTargetIsTheMetricsEndpointOnLoopback(t *testing.T) {
	for _, tc := range []struct {
		bind string
		want []string
	}{
		{"0", nil},
		{"", nil},
		{"not an address", nil},
		{"127.0.0.1:18080", []string{"127.0.0.1:18080"}},
		{":8080", []string{"127.0.0.1:8080"}},
		{"0.0.0.0:8080", []string{"127.0.0.1:8080"}},
		{"[::1]:8080", []string{"[::1]:8080"}},
	} {
		got := operatorTargets(tc.bind)
		if len(tc.want) == 0 {
			if len(got) != 0 {
				t.Errorf("%q: %v, want no target", tc.bind, got)
			}
			continue
		}
		if len(got) != 1 || len(got[0].Targets) != 1 || got[0].Targets[0] != tc.want[0] {
			t.Errorf("%q: %v, want %v", tc.bind, got, tc.want)
		}
	}
}

func TestWorkerTargetsCarryThePodMonitorsLabels(t *testing.T) {
	got := workerTargets([]podTarget{
		{Namespace: "demo", Pipeline: "orders", Name: "orders-worker-b", Port: 41002},
		{Namespace: "demo", Pipeline: "orders", Name: "orders-worker-starting"}, // no port yet: not a target
		{Namespace: "demo", Pipeline: "orders", Name: "orders-worker-a", Port: 41001},
	})
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"targets":["127.0.0.1:41001"],"labels":{"namespace":"demo","pipeline":"orders","pod":"orders-worker-a"}},` +
		`{"targets":["127.0.0.1:41002"],"labels":{"namespace":"demo","pipeline":"orders","pod":"orders-worker-b"}}]`
	if string(b) != want {
		t.Errorf("worker targets\n got %s\nwant %s", b, want)
	}
	// No pods is an empty list, which Prometheus reads as no targets (null
	// would be an error in its log).
	if b, _ := json.Marshal(workerTargets(nil)); string(b) != "[]" {
		t.Errorf("no pods: %s, want []", b)
	}
}

func TestTargetFilesAreReplacedWhole(t *testing.T) {
	path := filepath.Join(t.TempDir(), WorkerTargetsFile)
	for _, v := range [][]targetGroup{{{Targets: []string{"127.0.0.1:1"}}}, {}} {
		if err := writeJSONAtomically(path, v); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var back []targetGroup
		if err := json.Unmarshal(b, &back); err != nil || len(back) != len(v) {
			t.Errorf("read back %s (%v), want %d groups", b, err, len(v))
		}
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("the temporary file is left behind (%v)", err)
	}
}
