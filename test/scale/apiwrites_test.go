package scale

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-dev/sluice/internal/testenv"
)

// The API writes are counted by the API server itself: kube-apiserver's
// apiserver_request_total, by verb, resource and subresource, read from its
// /metrics. That counts what the real server served, adds no hop between the
// operator and the server (a counting proxy would add latency to every call and
// CPU to this process, and would have to re-sign requests), and sees what any
// client writes. Its cost is that it can't tell clients apart: the few writes
// that are not the operator's are named in notOperator and left out of the
// total, and every key is reported.

// writeVerbs are apiserver_request_total's verbs that change state: create
// and update count under their HTTP methods, a server-side apply as APPLY.
var writeVerbs = []string{"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"}

// notOperator are written by others while a fleet is measured: the benchmark,
// playing the Deployment controller, writes deployments/status; the API
// server renews its identity lease (the operator runs without leader
// election).
var notOperator = []string{"deployments/status", "leases"}

// apiCounts are the writes an API server has served, by "VERB resource" (with
// "/subresource" when there is one).
type apiCounts map[string]float64

// operatorTotal sums the counts of everything but notOperator.
func (c apiCounts) operatorTotal() float64 {
	var sum float64
	for k, v := range c {
		_, resource, _ := strings.Cut(k, " ")
		if !slices.Contains(notOperator, resource) {
			sum += v
		}
	}
	return sum
}

// minus is c − before, key by key.
func (c apiCounts) minus(before apiCounts) apiCounts {
	out := apiCounts{}
	for k, v := range c {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// report reports each count divided by per, as "<prefix><verb>-<resource>-<unit>".
func (c apiCounts) report(b *testing.B, prefix string, per float64, unit string) {
	b.Helper()
	for k, v := range c {
		verb, resource, _ := strings.Cut(k, " ")
		b.ReportMetric(v/per, prefix+verb+"-"+resource+"-"+unit)
	}
}

// apiServerWrites reads the API server's write counts.
func apiServerWrites(ctx context.Context, cfg *rest.Config) (apiCounts, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	families, err := scrape(ctx, hc, strings.TrimSuffix(cfg.Host, "/")+"/metrics")
	if err != nil {
		return nil, err
	}
	out := apiCounts{}
	mf, ok := families["apiserver_request_total"]
	if !ok {
		return nil, fmt.Errorf("no apiserver_request_total in the API server's metrics")
	}
	for _, m := range mf.GetMetric() {
		l := labels(m)
		if !slices.Contains(writeVerbs, l["verb"]) {
			continue
		}
		resource := l["resource"]
		if l["subresource"] != "" {
			resource += "/" + l["subresource"]
		}
		out[l["verb"]+" "+resource] += m.GetCounter().GetValue()
	}
	return out, nil
}

// reconcileTotal is the operator's controller_runtime_reconcile_total of the
// StreamPipeline controller, all results together.
func reconcileTotal(ctx context.Context, url string) (float64, error) {
	families, err := scrape(ctx, http.DefaultClient, url)
	if err != nil {
		return 0, err
	}
	var sum float64
	for _, m := range families["controller_runtime_reconcile_total"].GetMetric() {
		if labels(m)["controller"] == "streampipeline" {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum, nil
}

// scrape reads a Prometheus text endpoint.
func scrape(ctx context.Context, hc *http.Client, url string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

func labels(m *dto.Metric) map[string]string {
	out := make(map[string]string, len(m.GetLabel()))
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// TestAPIServerCountsEveryWrite checks the counting BenchmarkFleet relies on:
// a known set of writes by a client, each kind once or more, shows up at the
// API server under its verb and resource, no more and no less.
func TestAPIServerCountsEveryWrite(t *testing.T) {
	ctx := context.Background()
	env, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = env.Stop() }()
	k8s := env.Client
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "count-"}}
	if err := k8s.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}

	before, err := apiServerWrites(ctx, env.Config)
	if err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: ns.Name}, Data: map[string]string{"k": "0"}}
	if err := k8s.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	cm.Data["k"] = "updated"
	if err := k8s.Update(ctx, cm); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		patch := client.RawPatch("application/merge-patch+json", fmt.Appendf(nil, `{"data":{"k":"%d"}}`, i+1))
		if err := k8s.Patch(ctx, cm, patch); err != nil {
			t.Fatal(err)
		}
	}
	apply := fmt.Appendf(nil, `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","namespace":%q},"data":{"k":"applied"}}`, ns.Name)
	for range 2 { // the second apply changes nothing and is still a request
		if err := k8s.Patch(ctx, cm, client.RawPatch("application/apply-patch+yaml", apply), client.FieldOwner("count"), client.ForceOwnership); err != nil {
			t.Fatal(err)
		}
	}
	if err := k8s.Delete(ctx, cm); err != nil {
		t.Fatal(err)
	}

	want := apiCounts{"POST configmaps": 1, "PUT configmaps": 1, "PATCH configmaps": 3, "APPLY configmaps": 2, "DELETE configmaps": 1}
	var got apiCounts
	// The server counts a request as its handler returns, which may be just
	// after the client has the answer.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		after, err := apiServerWrites(ctx, env.Config)
		if err != nil {
			t.Fatal(err)
		}
		got = apiCounts{}
		for k, v := range after.minus(before) {
			if strings.HasSuffix(k, " configmaps") {
				got[k] = v
			}
		}
		if fmt.Sprint(got) == fmt.Sprint(want) || time.Now().After(deadline) {
			break
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("configmap writes counted at the API server: %v, want %v", got, want)
	}
	if got.operatorTotal() != 8 {
		t.Errorf("total %v, want 8", got.operatorTotal())
	}
}

func TestOperatorTotalLeavesOutOthersWrites(t *testing.T) {
	c := apiCounts{"PUT deployments/status": 5, "PUT leases": 1, "APPLY deployments": 2, "PATCH streampipelines/status": 3}
	if got := c.operatorTotal(); got != 5 {
		t.Errorf("operatorTotal of %v = %v, want 5 (the apply and the status patches)", c, got)
	}
}
