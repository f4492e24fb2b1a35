// Package grafana_test keeps config/grafana/sluice.json honest. The tests in
// this file are static and run with `make test`: the dashboard is a Grafana
// dashboard of a current schema with a Prometheus data source variable and
// namespace and pipeline variables, every panel queries that data source,
// every expression parses (promtool) and uses only metrics Sluice exports,
// with the namespace and pipeline variables on every per-pipeline series, and
// docs/observability.md explains every panel. prometheus_test.go (build tag
// dashboard, `make test-dashboard`) runs every expression against a real
// Prometheus scraping a running operator and workers.
package grafana_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/sluice-dev/sluice/internal/modroot"
	"github.com/sluice-dev/sluice/internal/testenv"
)

// minSchemaVersion is Grafana 10.4/11's dashboard schema.
const minSchemaVersion = 39

// datasourceUID is how every panel, target and query variable names the data
// source: the dashboard's own data source variable, so that an import asks for
// nothing and a user picks the Prometheus from a list.
const datasourceUID = "${datasource}"

type dashboard struct {
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []annotation `json:"list"`
	} `json:"annotations"`
	Panels []panel `json:"panels"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Datasource *datasourceRef  `json:"datasource"`
	Multi      bool            `json:"multi"`
	IncludeAll bool            `json:"includeAll"`
}

// queryText is a query variable's query: a string in old dashboards, an object
// with a "query" field in those the current editor saves.
func (v variable) queryText() string {
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var o struct {
		Query string `json:"query"`
	}
	_ = json.Unmarshal(v.Query, &o)
	return o.Query
}

type annotation struct {
	Name        string         `json:"name"`
	BuiltIn     int            `json:"builtIn"`
	Datasource  *datasourceRef `json:"datasource"`
	Enable      bool           `json:"enable"`
	Expr        string         `json:"expr"`
	TitleFormat string         `json:"titleFormat"`
	TextFormat  string         `json:"textFormat"`
}

type panel struct {
	ID          int            `json:"id"`
	Type        string         `json:"type"`
	Title       string         `json:"title"`
	Description string         `json:"description"`
	Datasource  *datasourceRef `json:"datasource"`
	GridPos     struct {
		H int `json:"h"`
		W int `json:"w"`
		X int `json:"x"`
		Y int `json:"y"`
	} `json:"gridPos"`
	Targets []target `json:"targets"`
	// Panels are a collapsed row's.
	Panels []panel `json:"panels"`
}

type target struct {
	RefID        string         `json:"refId"`
	Expr         string         `json:"expr"`
	LegendFormat string         `json:"legendFormat"`
	Datasource   *datasourceRef `json:"datasource"`
}

// query is one PromQL expression of the dashboard, named for a message.
type query struct {
	Where  string // `panel "Lag (records)" target A`, `annotation "Scale events"`
	Expr   string
	Legend string // the legendFormat or the annotation's title and text
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := modroot.Find()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func readFile(t *testing.T, path ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(path...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// loadDashboard parses sluice.json. Grafana's schema is open (every panel
// type has options of its own), so unknown fields are not refused; the tests
// check the parts that decide what a panel shows.
func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	var d dashboard
	if err := json.Unmarshal(readFile(t, "sluice.json"), &d); err != nil {
		t.Fatalf("sluice.json: %v", err)
	}
	return d
}

// allPanels flattens rows: a collapsed row keeps its panels inside it.
func allPanels(d dashboard) []panel {
	var out []panel
	for _, p := range d.Panels {
		out = append(out, p)
		out = append(out, p.Panels...)
	}
	return out
}

// queries are every panel target's and every annotation's expression.
func queries(d dashboard) []query {
	var out []query
	for _, p := range allPanels(d) {
		for _, tg := range p.Targets {
			out = append(out, query{Where: fmt.Sprintf("panel %q target %s", p.Title, tg.RefID), Expr: tg.Expr, Legend: tg.LegendFormat})
		}
	}
	for _, a := range d.Annotations.List {
		if a.BuiltIn == 1 {
			continue
		}
		out = append(out, query{Where: fmt.Sprintf("annotation %q", a.Name), Expr: a.Expr, Legend: a.TitleFormat + " " + a.TextFormat})
	}
	return out
}

var (
	variableRE = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::[a-z]+)?\}|\$([A-Za-z_][A-Za-z0-9_]*)`)
	legendRE   = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)
)

// substitute replaces the dashboard's variables as Grafana would before it
// sends a query; a variable it doesn't know is an error (a typo Grafana would
// send to Prometheus as it is).
func substitute(expr string, vars map[string]string) (string, error) {
	var unknown []string
	out := variableRE.ReplaceAllStringFunc(expr, func(m string) string {
		sm := variableRE.FindStringSubmatch(m)
		name := sm[1] + sm[2]
		v, ok := vars[name]
		if !ok {
			unknown = append(unknown, m)
			return m
		}
		return v
	})
	if len(unknown) > 0 {
		return "", fmt.Errorf("unknown variables %v", unknown)
	}
	return out, nil
}

// legendLabels are the labels a legend (or annotation text) shows: the series
// must have them.
func legendLabels(legend string) []string {
	var out []string
	for _, m := range legendRE.FindAllStringSubmatch(legend, -1) {
		if !slices.Contains(out, m[1]) {
			out = append(out, m[1])
		}
	}
	return out
}

func TestSubstituteReplacesTheDashboardsVariablesOnly(t *testing.T) {
	vars := map[string]string{"namespace": "shop", "pipeline": "(orders|refunds)", "__rate_interval": "10s"}
	for _, tc := range []struct{ in, want, err string }{
		{`rate(x{namespace=~"$namespace", pipeline=~"${pipeline}"}[$__rate_interval])`, `rate(x{namespace=~"shop", pipeline=~"(orders|refunds)"}[10s])`, ""},
		{`label_replace(x, "level", "$1", "topic", ".*[.]([0-9]+)$")`, `label_replace(x, "level", "$1", "topic", ".*[.]([0-9]+)$")`, ""},
		{`x{pipeline=~"${pipeline:regex}"}`, `x{pipeline=~"(orders|refunds)"}`, ""},
		{`x{pipeline=~"$pipline"}`, "", "$pipline"},
	} {
		got, err := substitute(tc.in, vars)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want one naming %s", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s:\n got %s (%v)\nwant %s", tc.in, got, err, tc.want)
		}
	}
	if got := legendLabels("{{namespace}}/{{ pipeline }} p{{partition}} {{namespace}}"); !slices.Equal(got, []string{"namespace", "pipeline", "partition"}) {
		t.Errorf("legend labels %v", got)
	}
}

func TestDashboardHasADatasourceAndNamespaceAndPipelineVariables(t *testing.T) {
	d := loadDashboard(t)
	if d.SchemaVersion < minSchemaVersion {
		t.Errorf("schemaVersion %d, want at least %d", d.SchemaVersion, minSchemaVersion)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q: both are needed for a stable import", d.UID, d.Title)
	}
	vars := map[string]variable{}
	var order []string
	for _, v := range d.Templating.List {
		vars[v.Name] = v
		order = append(order, v.Name)
	}
	if !slices.Equal(order, []string{"datasource", "namespace", "pipeline"}) {
		t.Errorf("variables %v, want datasource, namespace, pipeline (in that order: each depends on the one before)", order)
	}
	if ds := vars["datasource"]; ds.Type != "datasource" || ds.queryText() != "prometheus" {
		t.Errorf("datasource variable: type %q query %q, want a data source variable of type prometheus", ds.Type, ds.queryText())
	}
	defined := definedMetrics(t, repoRoot(t))
	for _, name := range []string{"namespace", "pipeline"} {
		v := vars[name]
		m := labelValuesRE.FindStringSubmatch(v.queryText())
		switch {
		case v.Type != "query":
			t.Errorf("%s variable: type %q, want query", name, v.Type)
		case v.Datasource == nil || v.Datasource.UID != datasourceUID:
			t.Errorf("%s variable: data source %+v, want uid %s", name, v.Datasource, datasourceUID)
		case m == nil || m[3] != name:
			t.Errorf("%s variable: query %q, want label_values(<metric>, %s)", name, v.queryText(), name)
		case defined[m[1]] == "":
			t.Errorf("%s variable: %s is not a metric Sluice's operator or workers define", name, m[1])
		case name == "pipeline" && !strings.Contains(m[2], `namespace=~"$namespace"`):
			t.Errorf("pipeline variable: query %q does not follow the namespace variable", v.queryText())
		case !v.Multi || !v.IncludeAll:
			t.Errorf("%s variable: multi %v, includeAll %v; the expressions use =~ so that several and All work", name, v.Multi, v.IncludeAll)
		}
	}
}

// labelValuesRE matches label_values(metric{selector}, label).
var labelValuesRE = regexp.MustCompile(`^label_values\(([a-z_:][a-z0-9_:]*)(\{[^}]*\})?,\s*([a-z_]+)\)$`)

func TestEveryPanelQueriesTheDatasourceVariable(t *testing.T) {
	d := loadDashboard(t)
	ids := map[int]string{}
	titles := map[string]bool{}
	type cell struct{ x, y int }
	taken := map[cell]string{}
	for _, p := range allPanels(d) {
		if prev, ok := ids[p.ID]; ok {
			t.Errorf("panels %q and %q share id %d", prev, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		if titles[p.Title] {
			t.Errorf("two panels are titled %q", p.Title)
		}
		titles[p.Title] = true
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v is outside Grafana's 24 columns", p.Title, g)
		}
	cells:
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := taken[cell{x, y}]; ok {
					t.Errorf("panels %q and %q overlap at column %d, row %d", other, p.Title, x, y)
					break cells
				}
				taken[cell{x, y}] = p.Title
			}
		}
		if p.Type == "row" {
			continue
		}
		if strings.TrimSpace(p.Description) == "" {
			t.Errorf("panel %q has no description (Grafana shows it as the panel's help)", p.Title)
		}
		if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != datasourceUID {
			t.Errorf("panel %q: data source %+v, want {prometheus %s}", p.Title, p.Datasource, datasourceUID)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if refs[tg.RefID] || tg.RefID == "" {
				t.Errorf("panel %q: refId %q is empty or repeated", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			if tg.Datasource == nil || tg.Datasource.UID != datasourceUID {
				t.Errorf("panel %q target %s: data source %+v, want uid %s", p.Title, tg.RefID, tg.Datasource, datasourceUID)
			}
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q target %s has no expression", p.Title, tg.RefID)
			}
		}
	}
	for _, a := range d.Annotations.List {
		if a.BuiltIn == 1 {
			continue
		}
		if a.Datasource == nil || a.Datasource.UID != datasourceUID || a.Expr == "" || !a.Enable {
			t.Errorf("annotation %q: data source %+v, expression %q, enabled %v; want an enabled query on %s", a.Name, a.Datasource, a.Expr, a.Enable, datasourceUID)
		}
	}
}

// The files that define Sluice's metric names, relative to the module root
// (config/prometheus/rules_test.go reads the same).
var metricSources = []string{"controllers/metrics.go", "worker/metrics.go"}

var (
	quotedNameRE = regexp.MustCompile(`"(sluice_[a-z_]+)"`)
	// A metric name in an expression: a Sluice one, or controller-runtime's
	// controller and work queue metrics.
	metricNameRE = regexp.MustCompile(`\b(sluice_[a-z0-9_]+|controller_runtime_[a-z0-9_]+|workqueue_[a-z0-9_]+)\b`)
	// A selector of a per-pipeline series.
	pipelineSelectorRE = regexp.MustCompile(`\b(sluice_(?:pipeline|worker)_[a-z0-9_]+)(\{[^}]*\})?`)
)

// definedMetrics maps each metric name the code defines to its file.
func definedMetrics(t *testing.T, root string) map[string]string {
	t.Helper()
	defined := map[string]string{}
	for _, src := range metricSources {
		for _, m := range quotedNameRE.FindAllStringSubmatch(string(readFile(t, root, src)), -1) {
			defined[m[1]] = src
		}
	}
	if len(defined) == 0 {
		t.Fatalf("no metric names found in %v", metricSources)
	}
	return defined
}

func histogramBase(m string) string {
	for _, s := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(m, s); ok {
			return base
		}
	}
	return m
}

// controller-runtime metrics the operator row uses; the StreamPipeline
// controller is the only controller and work queue, and it is named so.
var controllerRuntimeMetrics = []string{
	"controller_runtime_reconcile_total", "controller_runtime_reconcile_errors_total",
	"controller_runtime_reconcile_time_seconds", "workqueue_depth", "workqueue_queue_duration_seconds",
}

func TestExpressionsUseOnlyMetricsSluiceExports(t *testing.T) {
	root := repoRoot(t)
	defined := definedMetrics(t, root)
	// franz-go's client metrics are registered under a namespace (kprom), not
	// one name at a time; the Prometheus test proves the names.
	kprom := strings.Contains(string(readFile(t, root, "worker", "clients.go")), `kprom.NewMetrics("sluice_worker_kafka"`)
	controller := regexp.MustCompile(`Named\("([^"]+)"\)`).FindSubmatch(readFile(t, root, "controllers", "streampipeline_controller.go"))
	if controller == nil {
		t.Fatal("controllers/streampipeline_controller.go names no controller")
	}
	for _, q := range queries(loadDashboard(t)) {
		used := metricNameRE.FindAllString(q.Expr, -1)
		if len(used) == 0 && !strings.HasPrefix(q.Expr, "ALERTS{") {
			t.Errorf("%s: %q uses no Sluice or controller-runtime metric", q.Where, q.Expr)
		}
		for _, m := range used {
			base := histogramBase(m)
			switch {
			case defined[m] != "" || defined[base] != "":
			case kprom && strings.HasPrefix(m, "sluice_worker_kafka_"):
			case slices.Contains(controllerRuntimeMetrics, base):
				if !strings.Contains(q.Expr, fmt.Sprintf(`controller=%q`, controller[1])) && !strings.Contains(q.Expr, fmt.Sprintf(`name=%q`, controller[1])) {
					t.Errorf("%s: %s is not limited to the %s controller", q.Where, m, controller[1])
				}
			default:
				t.Errorf("%s: %s is not a metric Sluice exports (%s define Sluice's)", q.Where, m, strings.Join(metricSources, ", "))
			}
		}
		for _, m := range pipelineSelectorRE.FindAllStringSubmatch(q.Expr, -1) {
			if !strings.Contains(m[2], `namespace=~"$namespace"`) || !strings.Contains(m[2], `pipeline=~"$pipeline"`) {
				t.Errorf("%s: %s%s does not follow the namespace and pipeline variables (namespace=~\"$namespace\", pipeline=~\"$pipeline\")", q.Where, m[1], m[2])
			}
		}
	}
}

// promtool is $PROMTOOL (`make test` sets it), else the build `make promtool`
// caches by the Makefile's PROMETHEUS_VERSION. A missing promtool fails.
func promtool(t *testing.T) string {
	t.Helper()
	return prometheusTool(t, "PROMTOOL", "promtool")
}

// prometheusTool finds promtool or prometheus: $env, else the Makefile's
// cached build of PROMETHEUS_VERSION.
func prometheusTool(t *testing.T, env, name string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s=%s: %v", env, p, err)
		}
		return p
	}
	m := regexp.MustCompile(`(?m)^PROMETHEUS_VERSION \?= (\S+)$`).FindSubmatch(readFile(t, repoRoot(t), "Makefile"))
	if m == nil {
		t.Fatal("the Makefile sets no PROMETHEUS_VERSION")
	}
	p := filepath.Join(testenv.CacheDir(), "tools", name+"-"+string(m[1]))
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s not found (%v): run `make %s` (builds github.com/prometheus/prometheus/cmd/%s@%s from the Go module proxy into %s) or set %s",
			name, err, name, name, m[1], filepath.Dir(p), env)
	}
	return p
}

// testVariables are what the tests substitute: one namespace, all of its
// pipelines as Grafana sends "All" (a regex alternation), and a
// $__rate_interval of several scrape intervals.
func testVariables(namespace string, pipelines []string, rateInterval string) map[string]string {
	return map[string]string{
		"namespace": namespace, "pipeline": "(" + strings.Join(pipelines, "|") + ")",
		"__rate_interval": rateInterval, "__interval": rateInterval, "datasource": "prometheus",
	}
}

// Every expression parses: promtool checks them as recording rules, after
// the variables are substituted as Grafana would.
func TestDashboardExpressionsParse(t *testing.T) {
	vars := testVariables("shop", []string{"orders", "refunds"}, "1m")
	var rules []map[string]string
	var names strings.Builder
	for i, q := range queries(loadDashboard(t)) {
		expr, err := substitute(q.Expr, vars)
		if err != nil {
			t.Errorf("%s: %v", q.Where, err)
			continue
		}
		name := fmt.Sprintf("dashboard:query_%d", i)
		rules = append(rules, map[string]string{"record": name, "expr": expr})
		fmt.Fprintf(&names, "%s is %s: %s\n", name, q.Where, expr)
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "dashboard-rules.yaml")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), promtool(t), "check", "rules", f).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s\n%s", err, out, names.String())
	}
}

func TestObservabilityDocExplainsEveryPanel(t *testing.T) {
	doc := string(readFile(t, repoRoot(t), "docs", "observability.md"))
	d := loadDashboard(t)
	for _, p := range allPanels(d) {
		if !strings.Contains(doc, p.Title) {
			t.Errorf("docs/observability.md does not mention the %s %q", p.Type, p.Title)
		}
	}
	for _, a := range d.Annotations.List {
		if a.BuiltIn != 1 && !strings.Contains(doc, a.Name) {
			t.Errorf("docs/observability.md does not mention the annotation %q", a.Name)
		}
	}
}
