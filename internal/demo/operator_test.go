package demo

import (
	"fmt"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/modroot"
)

// managerFlag matches a flag in `manager -h`: "  -name type\n    \tUsage (default X)".
var managerFlag = regexp.MustCompile(`(?m)^  -([a-z-]+) (duration|int)\n(?:[^\n]*\n)*?[^\n]*\(default ([^)]+)\)`)

// TestTheDemosOperatorHasTheManagersDefaults runs `cmd/manager -h` and checks
// that every interval and count it takes as a flag has, in the demo's
// operator (zero values, filled by SetupWithManager), the flag's default.
func TestTheDemosOperatorHasTheManagersDefaults(t *testing.T) {
	root, err := modroot.Find()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "run", "./cmd/manager", "-h")
	cmd.Dir = root
	out, _ := cmd.CombinedOutput() // -h exits with status 0 or 2 depending on the flag package's mood; the usage is what counts
	flags := map[string]string{}
	for _, m := range managerFlag.FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = m[3]
	}
	if len(flags) == 0 {
		t.Fatalf("no duration or int flags found in `manager -h`:\n%s", out)
	}

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := sluicev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	// No API server is needed to set the reconciler up, only to start it: the
	// kinds' REST mappings come from the scheme.
	mapper := meta.NewDefaultRESTMapper(nil)
	for gvk := range scheme.AllKnownTypes() {
		mapper.Add(gvk, meta.RESTScopeNamespace)
	}
	mgr, err := ctrl.NewManager(&rest.Config{Host: "http://127.0.0.1:1"}, ctrl.Options{
		Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		MapperProvider: func(*rest.Config, *http.Client) (meta.RESTMapper, error) { return mapper, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := setupOperator(mgr)
	if err != nil {
		t.Fatal(err)
	}
	demo := map[string]string{
		"stalled-retry-interval":    r.StalledRetryInterval.String(),
		"kafka-timeout":             r.KafkaTimeout.String(),
		"status-sync-period":        r.StatusSyncPeriod.String(),
		"resync-interval":           r.ResyncInterval.String(),
		"topic-deletion-timeout":    r.TopicDeletionTimeout.String(),
		"max-concurrent-reconciles": strconv.Itoa(r.MaxConcurrentReconciles),
	}
	for name, def := range flags {
		got, ok := demo[name]
		if !ok {
			t.Errorf("cmd/manager has -%s (default %s), which the demo's operator doesn't compare: add it here and make sure SetupWithManager defaults it the same way", name, def)
			continue
		}
		if !sameValue(got, def) {
			t.Errorf("-%s: cmd/manager's default is %s, the demo's operator runs with %s", name, def, got)
		}
	}
}

// sameValue compares two durations or two numbers as printed.
func sameValue(a, b string) bool {
	da, errA := time.ParseDuration(a)
	db, errB := time.ParseDuration(b)
	if errA == nil && errB == nil {
		return da == db
	}
	return fmt.Sprint(a) == fmt.Sprint(b)
}
