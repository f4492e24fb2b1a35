package charts

import (
	"reflect"
	"strings"
	"testing"
)

func TestDiffNamesTheObjectAndFieldThatDiffer(t *testing.T) {
	const deployment = `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: sluice-controller-manager
  namespace: sluice-system
  labels: {app.kubernetes.io/name: sluice, app.kubernetes.io/managed-by: %s}
spec:
  replicas: 1
  template:
    metadata:
      labels: {app.kubernetes.io/name: sluice}
    spec:
      containers:
      - name: manager
        args: [--leader-elect, --metrics-bind-address=:8080]
        env:
        - {name: SLUICE_WORKER_IMAGE, value: sluice:dev}
        ports:
        - {name: metrics, containerPort: 8080}
        - {name: health, containerPort: 8081}
`
	const role = `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: sluice-manager-role
  labels: {rbac.authorization.k8s.io/aggregate-to-view: "true"}
rules:
- apiGroups: [""]
  resources: [configmaps, secrets]
  verbs: [get, list]
`
	const crd = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: streampipelines.streaming.sluice.dev
  labels: {app.kubernetes.io/part-of: sluice}
spec:
  group: streaming.sluice.dev
  scope: Namespaced
`
	tests := []struct {
		name             string
		chart, kustomize string
		want             []string
	}{
		{
			name: "equal but for the labels each tool sets and the chart's own",
			chart: sprintf(deployment, "Helm") + "---\n" + role + "---\n" + `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: streampipelines.streaming.sluice.dev}
spec: {group: streaming.sluice.dev, scope: Namespaced}
`,
			kustomize: sprintf(deployment, "kustomize") + "---\n" + role + "---\n" + crd,
		},
		{
			name:      "an object only kustomize builds",
			chart:     role,
			kustomize: role + "---\n" + crd,
			want:      []string{"CustomResourceDefinition streampipelines.streaming.sluice.dev: kustomize builds it, the chart does not render it"},
		},
		{
			name:      "an object only the chart renders",
			chart:     role + "---\n" + crd,
			kustomize: role,
			want:      []string{"CustomResourceDefinition streampipelines.streaming.sluice.dev: the chart renders it, kustomize does not build it"},
		},
		{
			name:      "a container arg",
			chart:     replace(sprintf(deployment, "Helm"), "--leader-elect, ", ""),
			kustomize: sprintf(deployment, "kustomize"),
			want: []string{`Deployment sluice-system/sluice-controller-manager: spec.template.spec.containers[manager].args: ` +
				`chart ["--metrics-bind-address=:8080"], kustomize ["--leader-elect","--metrics-bind-address=:8080"]`},
		},
		{
			name:      "an env value",
			chart:     replace(sprintf(deployment, "Helm"), "value: sluice:dev", "value: other:dev"),
			kustomize: sprintf(deployment, "kustomize"),
			want: []string{`Deployment sluice-system/sluice-controller-manager: spec.template.spec.containers[manager].env[SLUICE_WORKER_IMAGE].value: ` +
				`chart "other:dev", kustomize "sluice:dev"`},
		},
		{
			name:      "a port only kustomize has",
			chart:     replace(sprintf(deployment, "Helm"), "        - {name: health, containerPort: 8081}\n", ""),
			kustomize: sprintf(deployment, "kustomize"),
			want:      []string{"Deployment sluice-system/sluice-controller-manager: spec.template.spec.containers[manager].ports[health]: kustomize has it, the chart does not"},
		},
		{
			name:      "ports in another order",
			chart:     replace(sprintf(deployment, "Helm"), "        - {name: metrics, containerPort: 8080}\n        - {name: health, containerPort: 8081}\n", "        - {name: health, containerPort: 8081}\n        - {name: metrics, containerPort: 8080}\n"),
			kustomize: sprintf(deployment, "kustomize"),
			want:      []string{"Deployment sluice-system/sluice-controller-manager: spec.template.spec.containers[manager].ports: order: chart [health metrics], kustomize [metrics health]"},
		},
		{
			name:      "a field only the chart sets",
			chart:     replace(sprintf(deployment, "Helm"), "  replicas: 1\n", "  replicas: 1\n  paused: true\n"),
			kustomize: sprintf(deployment, "kustomize"),
			want:      []string{"Deployment sluice-system/sluice-controller-manager: spec.paused: chart true, kustomize (unset)"},
		},
		{
			name:      "a pod label kustomize sets and the chart does not",
			chart:     replace(sprintf(deployment, "Helm"), "      labels: {app.kubernetes.io/name: sluice}", "      labels: {app.kubernetes.io/name: other}"),
			kustomize: sprintf(deployment, "kustomize"),
			want:      []string{`Deployment sluice-system/sluice-controller-manager: spec.template.metadata.labels.app.kubernetes.io/name: chart "other", kustomize "sluice"`},
		},
		{
			name:      "an aggregation label the chart leaves out",
			chart:     replace(role, "  labels: {rbac.authorization.k8s.io/aggregate-to-view: \"true\"}\n", ""),
			kustomize: role,
			want:      []string{`ClusterRole sluice-manager-role: metadata.labels: kustomize sets rbac.authorization.k8s.io/aggregate-to-view="true", the chart does not`},
		},
		{
			name: "rules grouped and ordered otherwise grant the same",
			chart: replace(role, "- apiGroups: [\"\"]\n  resources: [configmaps, secrets]\n  verbs: [get, list]\n",
				"- apiGroups: [\"\"]\n  resources: [secrets]\n  verbs: [list, get]\n- apiGroups: [\"\"]\n  resources: [configmaps]\n  verbs: [get, list]\n"),
			kustomize: role,
		},
		{
			name:      "a rule only kustomize has",
			chart:     role,
			kustomize: role + "- apiGroups: [apps]\n  resources: [deployments]\n  verbs: [watch]\n",
			want:      []string{"ClusterRole sluice-manager-role: rules: kustomize grants apps/deployments watch, the chart does not"},
		},
		{
			name:      "a verb only the chart grants, on a named resource",
			chart:     role + "- apiGroups: [\"\"]\n  resources: [secrets]\n  resourceNames: [kafka]\n  verbs: [delete]\n",
			kustomize: role,
			want:      []string{"ClusterRole sluice-manager-role: rules: the chart grants core/secrets/kafka delete, kustomize does not"},
		},
		{
			name:      "a CRD's spec",
			chart:     replace(crd, "scope: Namespaced", "scope: Cluster"),
			kustomize: crd,
			want:      []string{`CustomResourceDefinition streampipelines.streaming.sluice.dev: spec.scope: chart "Cluster", kustomize "Namespaced"`},
		},
		{
			name:      "an object rendered twice",
			chart:     role + "---\n" + role,
			kustomize: role,
			want:      []string{"ClusterRole sluice-manager-role: the chart renders it more than once"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chart, err := Decode([]byte(tt.chart))
			if err != nil {
				t.Fatalf("chart: %v", err)
			}
			kustomize, err := Decode([]byte(tt.kustomize))
			if err != nil {
				t.Fatalf("kustomize: %v", err)
			}
			if got := Diff(chart, kustomize); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Diff:\n got  %q\n want %q", got, tt.want)
			}
		})
	}
}

func TestDecodeSkipsEmptyDocuments(t *testing.T) {
	objs, err := Decode([]byte("---\n# Source: sluice/templates/x.yaml\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a}\n---\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 || KeyOf(objs[0]) != (Key{Kind: "ServiceAccount", Name: "a"}) {
		t.Errorf("Decode = %v, want the one ServiceAccount a", objs)
	}
}

func sprintf(format, arg string) string { return replace(format, "%s", arg) }

// replace replaces old, which must occur, in s once.
func replace(s, old, repl string) string {
	i := strings.Index(s, old)
	if i < 0 {
		panic("replace: " + old + " not in the test manifest")
	}
	return s[:i] + repl + s[i+len(old):]
}
