package controllers

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"reflect"
	"sync"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

// annotationApplied holds the hash of the apply configuration Sluice last
// applied to an object it owns. With it, a reconcile that would apply the
// same configuration to an object that still holds every field of it skips
// the apply: on a steady fleet, most reconciles (the periodic resync, lag
// wake-ups) change none of the four owned objects, and each unchanged apply
// was an API write (issue 12: 51 of 63 writes/s at 1,000 pipelines).
//
// Both halves are needed. The hash says the intent did not change, including
// fields Sluice stopped setting (an apply would remove those; a comparison
// of the desired fields alone can't see them). The containment check says
// nobody changed a field Sluice sets since (kubectl edit, another
// controller), which the hash can't see. The cache strips managed fields, so
// the operator can't ask the object what it owns.
const annotationApplied = "streaming.sluice.dev/applied"

// appliedHash is the hash of an apply configuration (without the annotation
// itself). encoding/json sorts map keys, so equal configurations hash
// equally.
func appliedHash(u map[string]any) (string, error) {
	b, err := json.Marshal(u)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12]), nil
}

// upToDate reports whether existing was last applied with this configuration
// (hash) and still holds every field of want.
func upToDate(want, existing map[string]any, hash string) bool {
	meta, _ := existing["metadata"].(map[string]any)
	ann, _ := meta["annotations"].(map[string]any)
	if ann[annotationApplied] != hash {
		return false
	}
	// apiVersion and kind name the object, and a typed read leaves them empty.
	fields := make(map[string]any, len(want))
	for k, v := range want {
		if k != "apiVersion" && k != "kind" {
			fields[k] = v
		}
	}
	return contains(existing, fields)
}

// contains reports whether have holds want: every key of a map in want is in
// have with a value that holds want's, lists are equal in length and hold
// element by element, scalars are equal. A nil, empty map or empty list in
// want asks for nothing (the typed-to-unstructured conversion writes
// "creationTimestamp": null and empty structs, which the API server drops).
func contains(have, want any) bool {
	switch w := want.(type) {
	case nil:
		return true
	case map[string]any:
		if len(w) == 0 {
			return true
		}
		h, ok := have.(map[string]any)
		if !ok {
			return false
		}
		for k, wv := range w {
			hv, present := h[k]
			if !present && !emptyValue(wv) {
				return false
			}
			if present && !contains(hv, wv) {
				return false
			}
		}
		return true
	case []any:
		if len(w) == 0 {
			return true
		}
		h, ok := have.([]any)
		if !ok || len(h) != len(w) {
			return false
		}
		for i := range w {
			if !contains(h[i], w[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(have, want)
}

// emptyValue: nil, an empty map or an empty list (a field the API server
// does not keep).
func emptyValue(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case map[string]any:
		return len(x) == 0
	case []any:
		return len(x) == 0
	}
	return false
}

// appliedMarks are, per object, the resourceVersion and generation the last
// apply of this process got back. The cache may lag behind that apply: a
// cached object from before it can match the desired configuration while
// the object on the server, as that apply left it, does not (scaled to zero a
// moment ago, the cache still shows one replica, and one is wanted again).
// An apply is skipped only on a cached object at least as new as the last
// apply: the same generation or a later one (generations grow with every
// spec change, whoever makes it; status writes by the Deployment controller
// don't change it), or, for kinds without a generation, the same
// resourceVersion. A process that has not applied an object yet applies it.
type appliedMarks struct {
	m sync.Map // object key → appliedMark
}

type appliedMark struct {
	resourceVersion string
	generation      int64
}

func markKey(kind string, o client.Object) string {
	return kind + "/" + o.GetNamespace() + "/" + o.GetName()
}

func (a *appliedMarks) record(kind string, o client.Object) {
	if a == nil {
		return
	}
	a.m.Store(markKey(kind, o), appliedMark{o.GetResourceVersion(), o.GetGeneration()})
}

// notOlder reports whether the cached object is at least as new as this
// process's last apply of it.
func (a *appliedMarks) notOlder(kind string, cached client.Object) bool {
	if a == nil {
		return false
	}
	v, ok := a.m.Load(markKey(kind, cached))
	if !ok {
		return false
	}
	mark := v.(appliedMark)
	if mark.generation > 0 {
		return cached.GetGeneration() >= mark.generation
	}
	return cached.GetResourceVersion() == mark.resourceVersion
}
