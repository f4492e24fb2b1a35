// Package charts holds Sluice's Helm chart (sluice/) and what keeps it from
// drifting from config/: Diff compares the objects `helm template` renders with
// those `kustomize build config/default` builds, and chart_test.go runs both.
package charts

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// Key names an object across both installs.
type Key struct{ Kind, Namespace, Name string }

func (k Key) String() string {
	if k.Namespace == "" {
		return k.Kind + " " + k.Name
	}
	return k.Kind + " " + k.Namespace + "/" + k.Name
}

// KeyOf returns the object's kind, namespace and name.
func KeyOf(u *unstructured.Unstructured) Key {
	return Key{Kind: u.GetKind(), Namespace: u.GetNamespace(), Name: u.GetName()}
}

// Decode reads a stream of YAML documents (helm template's and kustomize
// build's output) into objects; empty documents (a template that rendered
// nothing) are skipped.
func Decode(manifests []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifests), 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, err
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
}

// labelsNotCompared are labels each tool sets on its own: kustomize's
// "kustomize", Helm's "Helm".
var labelsNotCompared = map[string]bool{"app.kubernetes.io/managed-by": true}

// Diff returns one line per difference between what the chart renders and what
// kustomize builds, naming the object and the field: objects only one of them
// has, and fields that differ. Everything is compared exactly, except:
//   - labels and annotations: the chart may add its own (helm.sh/chart,
//     app.kubernetes.io/instance, ...), but must carry every one kustomize
//     sets, with the same value (aggregate-to-*, selectors), but
//     app.kubernetes.io/managed-by;
//   - the rules of a Role or ClusterRole: as sets of grants, so that their
//     order and grouping don't matter;
//   - a CustomResourceDefinition's labels: Helm installs crds/ verbatim, so
//     the chart's CRD can't carry kustomize's labels.
func Diff(chart, kustomize []*unstructured.Unstructured) []string {
	var diffs []string
	c, dc := index(chart)
	k, dk := index(kustomize)
	for _, key := range dc {
		diffs = append(diffs, fmt.Sprintf("%s: the chart renders it more than once", key))
	}
	for _, key := range dk {
		diffs = append(diffs, fmt.Sprintf("%s: kustomize builds it more than once", key))
	}
	for _, key := range sortedKeys(k) {
		if _, ok := c[key]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: kustomize builds it, the chart does not render it", key))
		}
	}
	for _, key := range sortedKeys(c) {
		ko, ok := k[key]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("%s: the chart renders it, kustomize does not build it", key))
			continue
		}
		for _, d := range diffObject(c[key], ko) {
			diffs = append(diffs, key.String()+": "+d)
		}
	}
	return diffs
}

func index(objs []*unstructured.Unstructured) (byKey map[Key]*unstructured.Unstructured, dups []Key) {
	byKey = map[Key]*unstructured.Unstructured{}
	for _, o := range objs {
		key := KeyOf(o)
		if _, ok := byKey[key]; ok {
			dups = append(dups, key)
		}
		byKey[key] = o
	}
	return byKey, dups
}

func sortedKeys(m map[Key]*unstructured.Unstructured) []Key {
	keys := make([]Key, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	return keys
}

func diffObject(chart, kustomize *unstructured.Unstructured) []string {
	kind := chart.GetKind()
	var diffs []string
	if kind == "Role" || kind == "ClusterRole" {
		diffs = append(diffs, diffRules(chart.Object["rules"], kustomize.Object["rules"])...)
	}
	ignore := func(path string) bool {
		switch {
		case kind == "CustomResourceDefinition" && path == "metadata.labels":
			return true
		case (kind == "Role" || kind == "ClusterRole") && path == "rules":
			return true
		}
		return false
	}
	return append(diffs, diffValue("", chart.Object, kustomize.Object, ignore)...)
}

// diffValue compares a and k (the chart's and kustomize's value at path).
func diffValue(path string, a, k any, ignore func(string) bool) []string {
	if ignore(path) {
		return nil
	}
	if strings.HasSuffix(path, "metadata.labels") || strings.HasSuffix(path, "metadata.annotations") {
		return diffSubset(path, a, k)
	}
	am, aIsMap := a.(map[string]any)
	km, kIsMap := k.(map[string]any)
	if aIsMap && kIsMap {
		var diffs []string
		for _, f := range unionKeys(am, km) {
			diffs = append(diffs, diffValue(join(path, f), am[f], km[f], ignore)...)
		}
		return diffs
	}
	al, aIsList := a.([]any)
	kl, kIsList := k.([]any)
	if aIsList && kIsList {
		if an, kn, ok := namesOf(al, kl); ok {
			return diffNamedLists(path, al, kl, an, kn, ignore)
		}
		if len(al) == len(kl) && !allScalars(al) {
			var diffs []string
			for i := range al {
				diffs = append(diffs, diffValue(fmt.Sprintf("%s[%d]", path, i), al[i], kl[i], ignore)...)
			}
			return diffs
		}
	}
	if !equal(a, k) {
		return []string{fmt.Sprintf("%s: chart %s, kustomize %s", path, show(a), show(k))}
	}
	return nil
}

// diffSubset: every label or annotation kustomize sets, the chart sets too.
func diffSubset(path string, a, k any) []string {
	am, _ := a.(map[string]any)
	km, _ := k.(map[string]any)
	var diffs []string
	for _, f := range unionKeys(nil, km) {
		if labelsNotCompared[f] {
			continue
		}
		v, ok := am[f]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("%s: kustomize sets %s=%s, the chart does not", path, f, show(km[f])))
		case !equal(v, km[f]):
			diffs = append(diffs, fmt.Sprintf("%s.%s: chart %s, kustomize %s", path, f, show(v), show(km[f])))
		}
	}
	return diffs
}

// namesOf returns the "name" of each item when every item of both lists is an
// object with one (containers, env, ports, volumes), so that they are matched
// by name and a difference is reported as containers[manager].args.
func namesOf(a, k []any) (an, kn []string, ok bool) {
	if len(a) == 0 && len(k) == 0 {
		return nil, nil, false
	}
	names := func(l []any) ([]string, bool) {
		var ns []string
		seen := map[string]bool{}
		for _, it := range l {
			m, isMap := it.(map[string]any)
			n, isString := m["name"].(string)
			if !isMap || !isString || seen[n] {
				return nil, false
			}
			seen[n] = true
			ns = append(ns, n)
		}
		return ns, true
	}
	an, aok := names(a)
	kn, kok := names(k)
	return an, kn, aok && kok
}

func diffNamedLists(path string, a, k []any, an, kn []string, ignore func(string) bool) []string {
	var diffs []string
	ai := map[string]any{}
	for i, n := range an {
		ai[n] = a[i]
	}
	ki := map[string]any{}
	for i, n := range kn {
		ki[n] = k[i]
	}
	for _, n := range kn {
		if _, ok := ai[n]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s[%s]: kustomize has it, the chart does not", path, n))
		}
	}
	for _, n := range an {
		if _, ok := ki[n]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s[%s]: the chart has it, kustomize does not", path, n))
			continue
		}
		diffs = append(diffs, diffValue(fmt.Sprintf("%s[%s]", path, n), ai[n], ki[n], ignore)...)
	}
	if len(diffs) == 0 && !reflect.DeepEqual(an, kn) {
		diffs = append(diffs, fmt.Sprintf("%s: order: chart %v, kustomize %v", path, an, kn))
	}
	return diffs
}

// diffRules compares two lists of PolicyRules as sets of single grants.
func diffRules(a, k any) []string {
	ag, err := grants(a)
	if err != nil {
		return []string{"rules of the chart: " + err.Error()}
	}
	kg, err := grants(k)
	if err != nil {
		return []string{"rules built by kustomize: " + err.Error()}
	}
	var diffs []string
	for _, g := range sortedSet(kg) {
		if !ag[g] {
			diffs = append(diffs, "rules: kustomize grants "+g+", the chart does not")
		}
	}
	for _, g := range sortedSet(ag) {
		if !kg[g] {
			diffs = append(diffs, "rules: the chart grants "+g+", kustomize does not")
		}
	}
	return diffs
}

// grants expands PolicyRules into one string per (API group, resource, name,
// verb) or (non-resource URL, verb), e.g. "apps/deployments get" or
// "/metrics get".
func grants(rules any) (map[string]bool, error) {
	list, ok := rules.([]any)
	if !ok && rules != nil {
		return nil, fmt.Errorf("not a list: %s", show(rules))
	}
	out := map[string]bool{}
	for i, r := range list {
		m, ok := r.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("rule %d is not an object: %s", i, show(r))
		}
		verbs := strings0(m["verbs"])
		for _, u := range strings0(m["nonResourceURLs"]) {
			for _, v := range verbs {
				out[u+" "+v] = true
			}
		}
		names := strings0(m["resourceNames"])
		if len(names) == 0 {
			names = []string{""}
		}
		for _, g := range strings0(m["apiGroups"]) {
			if g == "" {
				g = "core"
			}
			for _, res := range strings0(m["resources"]) {
				for _, n := range names {
					for _, v := range verbs {
						s := g + "/" + res
						if n != "" {
							s += "/" + n
						}
						out[s+" "+v] = true
					}
				}
			}
		}
	}
	return out, nil
}

func strings0(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, it := range l {
		out = append(out, fmt.Sprint(it))
	}
	return out
}

func sortedSet(s map[string]bool) []string {
	out := make([]string, 0, len(s))
	for k := range s {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func unionKeys(a, b map[string]any) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range []map[string]any{a, b} {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return out
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func allScalars(l []any) bool {
	for _, it := range l {
		switch it.(type) {
		case map[string]any, []any:
			return false
		}
	}
	return true
}

// equal compares decoded values; numbers compare by value, whatever their Go
// type (the decoder gives int64 or float64).
func equal(a, k any) bool {
	if af, ok := number(a); ok {
		kf, ok := number(k)
		return ok && af == kf
	}
	return reflect.DeepEqual(a, k)
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int64:
		return float64(n), true
	case float64:
		return n, true
	case int:
		return float64(n), true
	}
	return 0, false
}

func show(v any) string {
	if v == nil {
		return "(unset)"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%v", v)
	}
	return string(b)
}
