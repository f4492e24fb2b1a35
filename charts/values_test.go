package charts

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

var (
	managerKey       = Key{Kind: "Deployment", Namespace: namespace, Name: "sluice-controller-manager"}
	leaderRoleKey    = Key{Kind: "Role", Namespace: namespace, Name: "sluice-leader-election-role"}
	leaderBindingKey = Key{Kind: "RoleBinding", Namespace: namespace, Name: "sluice-leader-election-rolebinding"}
	metricsKey       = Key{Kind: "Service", Namespace: namespace, Name: "sluice-controller-manager-metrics"}
	monitorKey       = Key{Kind: "ServiceMonitor", Namespace: namespace, Name: "sluice-controller-manager"}
	clusterRoleKey   = Key{Kind: "ClusterRole", Name: "sluice-manager-role"}
	metricsAuthKey   = Key{Kind: "ClusterRole", Name: "sluice-metrics-auth-role"}
	metricsReaderKey = Key{Kind: "ClusterRole", Name: "sluice-metrics-reader"}
)

// The args and env the default values give the manager (config/manager's).
var defaultArgs = []string{"--leader-elect", "--metrics-bind-address=:8443", "--health-probe-bind-address=:8081"}

// rendered is one rendering of the chart, with accessors for what the cases check.
type rendered struct {
	t    *testing.T
	objs []*unstructured.Unstructured
}

func (r rendered) has(k Key) bool { return find(r.objs, k) != nil }

func (r rendered) get(k Key) *unstructured.Unstructured {
	r.t.Helper()
	o := find(r.objs, k)
	if o == nil {
		r.t.Fatalf("the chart renders no %s", k)
	}
	return o
}

// manager returns the manager container of the Deployment named name.
func (r rendered) manager(name string) map[string]any {
	r.t.Helper()
	d := r.get(Key{Kind: "Deployment", Namespace: namespace, Name: name})
	cs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	for _, c := range cs {
		if m, ok := c.(map[string]any); ok && m["name"] == "manager" {
			return m
		}
	}
	r.t.Fatalf("%s has no container manager", KeyOf(d))
	return nil
}

func (r rendered) args() []string {
	r.t.Helper()
	a, _, _ := unstructured.NestedStringSlice(r.manager(managerKey.Name), "args")
	return a
}

func (r rendered) env(name string) string {
	r.t.Helper()
	env, _, _ := unstructured.NestedSlice(r.manager(managerKey.Name), "env")
	for _, e := range env {
		if m, ok := e.(map[string]any); ok && m["name"] == name {
			v, _ := m["value"].(string)
			return v
		}
	}
	r.t.Fatalf("the manager has no env %s", name)
	return ""
}

// endpoint is the first scrape endpoint of the ServiceMonitor k.
func (r rendered) endpoint(k Key) map[string]any {
	r.t.Helper()
	eps, _, _ := unstructured.NestedSlice(r.get(k).Object, "spec", "endpoints")
	if len(eps) == 0 {
		r.t.Fatalf("%s has no endpoints", k)
	}
	ep, _ := eps[0].(map[string]any)
	return ep
}

func (r rendered) str(k Key, fields ...string) string {
	r.t.Helper()
	v, _, err := unstructured.NestedFieldNoCopy(r.get(k).Object, fields...)
	if err != nil {
		r.t.Fatal(err)
	}
	s, _ := v.(string)
	return s
}

func TestChartValues(t *testing.T) {
	tests := []struct {
		name    string
		flags   []string
		check   func(r rendered)
		wantErr string // a part of helm's error, for values the chart refuses
	}{
		{
			name: "the defaults elect a leader and set no other flag",
			check: func(r rendered) {
				if got := r.args(); !slices.Equal(got, defaultArgs) {
					r.t.Errorf("args = %q, want %q", got, defaultArgs)
				}
				if !r.has(leaderRoleKey) || !r.has(leaderBindingKey) {
					r.t.Error("no leader-election Role and RoleBinding")
				}
			},
		},
		{
			name:  "leader election off with one replica: no flag, no Role",
			flags: []string{"--set", "leaderElection.enabled=false"},
			check: func(r rendered) {
				if slices.Contains(r.args(), "--leader-elect") {
					r.t.Errorf("args %q elect a leader", r.args())
				}
				if r.has(leaderRoleKey) || r.has(leaderBindingKey) {
					r.t.Error("the leader-election Role or RoleBinding is rendered without leader election")
				}
			},
		},
		{
			name:  "more than one replica elects a leader whatever leaderElection says",
			flags: []string{"--set", "leaderElection.enabled=false", "--set", "replicaCount=3"},
			check: func(r rendered) {
				if !slices.Contains(r.args(), "--leader-elect") {
					r.t.Errorf("args %q don't elect a leader with 3 replicas", r.args())
				}
				if !r.has(leaderRoleKey) || !r.has(leaderBindingKey) {
					r.t.Error("no leader-election Role and RoleBinding with 3 replicas")
				}
				if n, _, _ := unstructured.NestedFloat64(r.get(managerKey).Object, "spec", "replicas"); n != 3 {
					r.t.Errorf("replicas = %v, want 3", n)
				}
			},
		},
		{
			name: "each named flag value sets its flag, sorted by flag, after the fixed ones",
			flags: []string{
				"--set", "manager.logLevel=debug", "--set", "manager.kafkaTimeout=20s",
				"--set", "manager.statusSyncPeriod=15s", "--set", "manager.resyncInterval=10m",
				"--set", "manager.stalledRetryInterval=1m", "--set", "manager.topicDeletionTimeout=5m",
				"--set", "manager.maxConcurrentReconciles=16",
			},
			check: func(r rendered) {
				want := append(slices.Clone(defaultArgs), "--kafka-timeout=20s", "--max-concurrent-reconciles=16",
					"--resync-interval=10m", "--stalled-retry-interval=1m", "--status-sync-period=15s",
					"--topic-deletion-timeout=5m", "--zap-log-level=debug")
				if got := r.args(); !slices.Equal(got, want) {
					r.t.Errorf("args = %q, want %q", got, want)
				}
			},
		},
		{
			name:  "extra args come last, sorted by flag",
			flags: []string{"--set", "manager.extraArgs.zap-time-encoding=rfc3339", "--set", "manager.extraArgs.zap-encoder=console", "--set", "manager.logLevel=2"},
			check: func(r rendered) {
				want := append(slices.Clone(defaultArgs), "--zap-log-level=2", "--zap-encoder=console", "--zap-time-encoding=rfc3339")
				if got := r.args(); !slices.Equal(got, want) {
					r.t.Errorf("args = %q, want %q", got, want)
				}
			},
		},
		{
			name:    "an extra arg that a named value sets is refused",
			flags:   []string{"--set", "manager.extraArgs.kafka-timeout=1s"},
			wantErr: "manager.extraArgs.kafka-timeout: set it with manager.kafkaTimeout instead",
		},
		{
			name:    "an extra arg the chart sets itself is refused",
			flags:   []string{"--set", "manager.extraArgs.--metrics-bind-address=:9000"},
			wantErr: "set it with metrics.port instead",
		},
		{
			name:    "a duration without a unit is refused",
			flags:   []string{"--set", "manager.resyncInterval=300"},
			wantErr: "/manager/resyncInterval",
		},
		{
			name:    "a misspelt value is refused",
			flags:   []string{"--set", "replicas=2"},
			wantErr: "replicas",
		},
		{
			name:  "the image tag is the workers' too",
			flags: []string{"--set", "image.repository=registry.example/sluice", "--set", "image.tag=v1.2.3"},
			check: func(r rendered) {
				if got := r.manager(managerKey.Name)["image"]; got != "registry.example/sluice:v1.2.3" {
					r.t.Errorf("image = %v", got)
				}
				if got := r.env("SLUICE_WORKER_IMAGE"); got != "registry.example/sluice:v1.2.3" {
					r.t.Errorf("SLUICE_WORKER_IMAGE = %q, want the operator's image", got)
				}
			},
		},
		{
			name:  "a worker image of its own",
			flags: []string{"--set", "workerImage.repository=registry.example/worker", "--set", "workerImage.tag=w1"},
			check: func(r rendered) {
				if got := r.manager(managerKey.Name)["image"]; got != "sluice:dev" {
					r.t.Errorf("image = %v, want sluice:dev", got)
				}
				if got := r.env("SLUICE_WORKER_IMAGE"); got != "registry.example/worker:w1" {
					r.t.Errorf("SLUICE_WORKER_IMAGE = %q", got)
				}
			},
		},
		{
			name:  "other ports reach the flags, the container and the Service",
			flags: []string{"--set", "metrics.port=9090", "--set", "healthProbe.port=9091", "--set", "metrics.service.enabled=true"},
			check: func(r rendered) {
				a := r.args()
				if !slices.Contains(a, "--metrics-bind-address=:9090") || !slices.Contains(a, "--health-probe-bind-address=:9091") {
					r.t.Errorf("args = %q", a)
				}
				ports, _, _ := unstructured.NestedSlice(r.manager(managerKey.Name), "ports")
				var got []string
				for _, p := range ports {
					m, _ := p.(map[string]any)
					got = append(got, fmt.Sprint(m["name"], "=", m["containerPort"]))
				}
				if want := []string{"metrics=9090", "health=9091"}; !slices.Equal(got, want) {
					r.t.Errorf("ports = %q, want %q", got, want)
				}
				if r.has(monitorKey) {
					r.t.Error("metrics.service.enabled renders a ServiceMonitor")
				}
				if !r.has(metricsKey) {
					r.t.Error("metrics.service.enabled renders no metrics Service")
				}
			},
		},
		{
			name:  "the ServiceMonitor brings the metrics Service and its labels",
			flags: []string{"--set", "prometheus.serviceMonitor.enabled=true", "--set", "prometheus.serviceMonitor.additionalLabels.release=kube-prometheus-stack"},
			check: func(r rendered) {
				if !r.has(metricsKey) {
					r.t.Error("a ServiceMonitor without the metrics Service")
				}
				if got := r.get(monitorKey).GetLabels()["release"]; got != "kube-prometheus-stack" {
					r.t.Errorf("ServiceMonitor label release = %q", got)
				}
			},
		},
		{
			name:  "watched namespaces: the flag, and a Role and RoleBinding in each instead of the ClusterRole",
			flags: []string{"--set", "watchNamespaces={team-a,team-b}"},
			check: func(r rendered) {
				if want := append(slices.Clone(defaultArgs), "--watch-namespaces=team-a,team-b"); !slices.Equal(r.args(), want) {
					r.t.Errorf("args = %q, want %q", r.args(), want)
				}
				if r.has(clusterRoleKey) || r.has(Key{Kind: "ClusterRoleBinding", Name: "sluice-manager-rolebinding"}) {
					r.t.Error("the manager's ClusterRole or its binding is rendered with watchNamespaces")
				}
				cluster := rendered{t: r.t, objs: mustHelmTemplate(r.t)}.get(clusterRoleKey)
				for _, ns := range []string{"team-a", "team-b"} {
					role := r.get(Key{Kind: "Role", Namespace: ns, Name: "sluice-manager-role"})
					for _, d := range diffRules(role.Object["rules"], cluster.Object["rules"]) {
						r.t.Errorf("the Role in %s against the ClusterRole without watchNamespaces: %s", ns, d)
					}
					b := Key{Kind: "RoleBinding", Namespace: ns, Name: "sluice-manager-rolebinding"}
					if got := r.str(b, "roleRef", "kind") + "/" + r.str(b, "roleRef", "name"); got != "Role/sluice-manager-role" {
						r.t.Errorf("%s refers to %s", b, got)
					}
					s, _, _ := unstructured.NestedSlice(r.get(b).Object, "subjects")
					if len(s) != 1 || fmt.Sprint(s[0].(map[string]any)["namespace"], "/", s[0].(map[string]any)["name"]) != namespace+"/sluice-controller-manager" {
						r.t.Errorf("%s binds %v, want the operator's ServiceAccount", b, s)
					}
				}
				if !r.has(metricsAuthKey) {
					r.t.Error("no metrics auth ClusterRole with watchNamespaces: TokenReviews are cluster-scoped")
				}
			},
		},
		{
			name:    "a watched namespace Kubernetes would refuse is refused",
			flags:   []string{"--set", "watchNamespaces={Team-A}"},
			wantErr: "watchNamespaces",
		},
		{
			name:    "watch-namespaces in extraArgs is refused",
			flags:   []string{"--set", "manager.extraArgs.watch-namespaces=a"},
			wantErr: "set it with watchNamespaces instead",
		},
		{
			name:  "secure metrics: HTTPS with a token, the auth and reader roles",
			flags: []string{"--set", "prometheus.serviceMonitor.enabled=true"},
			check: func(r rendered) {
				if !r.has(metricsAuthKey) || !r.has(metricsReaderKey) {
					r.t.Error("secure metrics without the metrics auth or reader ClusterRole")
				}
				ep := r.endpoint(monitorKey)
				if ep["scheme"] != "https" || ep["bearerTokenFile"] != "/var/run/secrets/kubernetes.io/serviceaccount/token" {
					r.t.Errorf("the ServiceMonitor scrapes %v", ep)
				}
				if tls, _ := ep["tlsConfig"].(map[string]any); tls["insecureSkipVerify"] != true {
					r.t.Errorf("tlsConfig %v, want insecureSkipVerify for the self-signed certificate", ep["tlsConfig"])
				}
			},
		},
		{
			name: "a certificate: the Secret mounted, the flag, the ServiceMonitor's tlsConfig",
			flags: []string{"--set", "metrics.certSecret=sluice-metrics-cert", "--set", "prometheus.serviceMonitor.enabled=true",
				"--set", "prometheus.serviceMonitor.tlsConfig.serverName=sluice-controller-manager-metrics.sluice-system.svc"},
			check: func(r rendered) {
				const path = "/tmp/k8s-metrics-server/metrics-certs"
				if !slices.Contains(r.args(), "--metrics-cert-path="+path) {
					r.t.Errorf("args %q", r.args())
				}
				mounts, _, _ := unstructured.NestedSlice(r.manager(managerKey.Name), "volumeMounts")
				vols, _, _ := unstructured.NestedSlice(r.get(managerKey).Object, "spec", "template", "spec", "volumes")
				if len(mounts) != 1 || mounts[0].(map[string]any)["mountPath"] != path || len(vols) != 1 ||
					fmt.Sprint(vols[0].(map[string]any)["secret"]) != "map[secretName:sluice-metrics-cert]" {
					r.t.Errorf("mounts %v, volumes %v", mounts, vols)
				}
				tls, _ := r.endpoint(monitorKey)["tlsConfig"].(map[string]any)
				if _, skip := tls["insecureSkipVerify"]; skip || tls["serverName"] == nil {
					r.t.Errorf("tlsConfig %v, want the one given, without insecureSkipVerify", tls)
				}
			},
		},
		{
			name:  "plain metrics: the flag, no auth roles, an HTTP ServiceMonitor",
			flags: []string{"--set", "metrics.secure=false", "--set", "metrics.port=8080", "--set", "prometheus.serviceMonitor.enabled=true"},
			check: func(r rendered) {
				want := []string{"--leader-elect", "--metrics-bind-address=:8080", "--metrics-secure=false", "--health-probe-bind-address=:8081"}
				if !slices.Equal(r.args(), want) {
					r.t.Errorf("args = %q, want %q", r.args(), want)
				}
				if r.has(metricsAuthKey) || r.has(metricsReaderKey) {
					r.t.Error("plain metrics with the metrics auth or reader ClusterRole")
				}
				if ep := r.endpoint(monitorKey); ep["scheme"] != "http" || ep["bearerTokenFile"] != nil || ep["tlsConfig"] != nil {
					r.t.Errorf("the ServiceMonitor scrapes %v", ep)
				}
			},
		},
		{
			name:    "a certificate for plain metrics is refused",
			flags:   []string{"--set", "metrics.secure=false", "--set", "metrics.certSecret=cert"},
			wantErr: "metrics.certSecret",
		},
		{
			name:  "another fullname names every object and reference",
			flags: []string{"--set", "fullnameOverride=ops"},
			check: func(r rendered) {
				for _, o := range r.objs {
					if n := o.GetName(); o.GetKind() != "CustomResourceDefinition" && !strings.HasPrefix(n, "ops-") {
						r.t.Errorf("%s is not named ops-*", KeyOf(o))
					}
				}
				crb := Key{Kind: "ClusterRoleBinding", Name: "ops-manager-rolebinding"}
				if got := r.str(crb, "roleRef", "name"); got != "ops-manager-role" {
					r.t.Errorf("%s refers to role %q", crb, got)
				}
				if got := r.get(Key{Kind: "Deployment", Namespace: namespace, Name: "ops-controller-manager"}).Object; got == nil {
					r.t.Error("no Deployment ops-controller-manager")
				}
			},
		},
		{
			name:  "an existing ServiceAccount: none rendered, the roles bound to it",
			flags: []string{"--set", "serviceAccount.create=false", "--set", "serviceAccount.name=platform-operator"},
			check: func(r rendered) {
				for _, o := range r.objs {
					if o.GetKind() == "ServiceAccount" {
						r.t.Errorf("renders %s", KeyOf(o))
					}
				}
				if got := r.str(managerKey, "spec", "template", "spec", "serviceAccountName"); got != "platform-operator" {
					r.t.Errorf("serviceAccountName = %q", got)
				}
				for _, k := range []Key{{Kind: "ClusterRoleBinding", Name: "sluice-manager-rolebinding"}, leaderBindingKey} {
					s, _, _ := unstructured.NestedSlice(r.get(k).Object, "subjects")
					if len(s) != 1 || s[0].(map[string]any)["name"] != "platform-operator" {
						r.t.Errorf("%s binds %v", k, s)
					}
				}
			},
		},
		{
			name:    "an existing ServiceAccount needs its name",
			flags:   []string{"--set", "serviceAccount.create=false"},
			wantErr: "serviceAccount.name",
		},
		{
			name:  "scheduling and pod values reach the pod",
			flags: []string{"-f", "charts/sluice/ci/all-values.yaml"},
			check: func(r rendered) {
				d := r.get(Key{Kind: "Deployment", Namespace: namespace, Name: "sluice-operator-controller-manager"})
				for _, f := range [][]string{
					{"spec", "template", "spec", "nodeSelector"}, {"spec", "template", "spec", "tolerations"},
					{"spec", "template", "spec", "affinity"}, {"spec", "template", "spec", "imagePullSecrets"},
					{"spec", "template", "spec", "priorityClassName"}, {"spec", "template", "metadata", "annotations"},
				} {
					if _, ok, _ := unstructured.NestedFieldNoCopy(d.Object, f...); !ok {
						r.t.Errorf("%s has no %s", KeyOf(d), strings.Join(f, "."))
					}
				}
				if got := d.GetLabels()["app.kubernetes.io/component"]; got != "operator" {
					r.t.Errorf("component label %q", got)
				}
				labels, _, _ := unstructured.NestedStringMap(d.Object, "spec", "template", "metadata", "labels")
				if labels["example.com/team"] != "platform" || labels["app.kubernetes.io/component"] != "operator" {
					r.t.Errorf("pod labels %v lack podLabels or the selector", labels)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := helmTemplate(t, tt.flags...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("helm template %q: err %v, want one with %q", tt.flags, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(rendered{t: t, objs: objs})
		})
	}
}
