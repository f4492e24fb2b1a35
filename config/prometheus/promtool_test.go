package prometheus_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/sluice-dev/sluice/internal/testenv"
)

// promtoolVersion is the Prometheus module version promtool is built from
// (v0.3xx.y is Prometheus 3.xx.y); TestPromtoolVersionMatchesMakefile keeps it
// equal to the Makefile's PROMETHEUS_VERSION, which `make promtool` builds.
const promtoolVersion = "v0.316.0"

// alertTests is the promtool unit test file of the alerts.
const alertTests = "testdata/alerts_test.yaml"

// promtool is $PROMTOOL (`make test` sets it), else the build `make promtool`
// caches in $SLUICE_CACHE/tools. A missing promtool fails the test.
func promtool(t *testing.T) string {
	t.Helper()
	p := os.Getenv("PROMTOOL")
	if p == "" {
		p = filepath.Join(testenv.CacheDir(), "tools", "promtool-"+promtoolVersion)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("promtool not found (%v): run `make promtool` (builds github.com/prometheus/prometheus/cmd/promtool@%s "+
			"from the Go module proxy into %s; 16.5 CPU-minutes cold) or set PROMTOOL",
			err, promtoolVersion, filepath.Join(testenv.CacheDir(), "tools"))
	}
	return p
}

func TestPromtoolVersionMatchesMakefile(t *testing.T) {
	m := regexp.MustCompile(`(?m)^PROMETHEUS_VERSION \?= (\S+)$`).FindSubmatch(readFile(t, root(t), "Makefile"))
	if m == nil {
		t.Fatal("the Makefile sets no PROMETHEUS_VERSION")
	}
	if string(m[1]) != promtoolVersion {
		t.Errorf("the Makefile builds promtool %s, the tests look for %s", m[1], promtoolVersion)
	}
}

// plainRuleFile writes the groups of the PrometheusRule in rules.yaml to
// dir/rules.yaml as the plain rule file Prometheus and promtool read. It
// decodes generically, so every field reaches promtool as written.
func plainRuleFile(t *testing.T, dir string) string {
	t.Helper()
	var pr struct {
		Spec struct {
			Groups []any `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(readFile(t, "rules.yaml"), &pr); err != nil {
		t.Fatalf("rules.yaml: %v", err)
	}
	if len(pr.Spec.Groups) == 0 {
		t.Fatal("rules.yaml has no spec.groups")
	}
	b, err := yaml.Marshal(map[string]any{"groups": pr.Spec.Groups})
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func runPromtool(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), promtool(t), args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	t.Logf("%s\n%s", cmd, out)
}

// promtool parses every expression and template and lints the rules.
func TestPromtoolChecksTheRules(t *testing.T) {
	runPromtool(t, "check", "rules", "--lint=all", "--lint-fatal", plainRuleFile(t, t.TempDir()))
}

// Each alert fires on the series that should trigger it, with its labels and
// annotations, and stays silent on the others (testdata/alerts_test.yaml).
func TestPromtoolUnitTestsOfTheAlerts(t *testing.T) {
	dir := t.TempDir()
	plainRuleFile(t, dir)
	tests := filepath.Join(dir, filepath.Base(alertTests))
	if err := os.WriteFile(tests, readFile(t, alertTests), 0o644); err != nil {
		t.Fatal(err)
	}
	runPromtool(t, "test", "rules", tests)
}

// promtool passes a case of an alert the rules don't have (exp_alerts: [] of a
// misspelt name) and says nothing of alerts without cases: every alert needs a
// case where it fires and one where it stays silent, and every case an alert.
func TestEveryAlertHasAFiringAndASilentPromtoolCase(t *testing.T) {
	var file struct {
		RuleFiles []string `json:"rule_files"`
		Tests     []struct {
			Name  string `json:"name"`
			Cases []struct {
				EvalTime  string `json:"eval_time"`
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(readFile(t, alertTests), &file); err != nil {
		t.Fatalf("%s: %v", alertTests, err)
	}
	if len(file.RuleFiles) != 1 || file.RuleFiles[0] != "rules.yaml" {
		t.Errorf("%s: rule_files %v, want [rules.yaml] (the file plainRuleFile writes next to it)", alertTests, file.RuleFiles)
	}
	tested, fires, silent := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, tc := range file.Tests {
		for _, c := range tc.Cases {
			tested[c.Alertname] = true
			if len(c.ExpAlerts) > 0 {
				fires[c.Alertname] = true
			} else {
				silent[c.Alertname] = true
			}
		}
	}
	alerts := map[string]bool{}
	for _, r := range rules(t) {
		if r.Alert == "" {
			continue
		}
		alerts[r.Alert] = true
		if !fires[r.Alert] {
			t.Errorf("%s: no case in %s where it fires", r.Alert, alertTests)
		}
		if !silent[r.Alert] {
			t.Errorf("%s: no case in %s where it stays silent", r.Alert, alertTests)
		}
	}
	for name := range tested {
		if !alerts[name] {
			t.Errorf("%s tests %q, which rules.yaml does not define", alertTests, name)
		}
	}
}
