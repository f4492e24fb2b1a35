package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The namespace-scoped mode (cmd/manager --watch-namespaces): the operator
// caches, reconciles and reads only the namespaces it is given, so that it can
// run on Roles in those namespaces instead of a ClusterRole that reaches every
// Secret in the cluster (docs/security.md).

// ErrNamespaceNotWatched is what a read outside the watched namespaces returns,
// without asking the API server.
var ErrNamespaceNotWatched = errors.New("namespace is not watched (--watch-namespaces)")

// ParseWatchNamespaces reads a comma-separated list of namespaces (spaces
// around a name and empty items are ignored, so "a, b," is a and b). It returns
// them sorted, each once; none (nil) means every namespace. A name Kubernetes
// would refuse is an error that names it.
func ParseWatchNamespaces(list string) ([]string, error) {
	var out []string
	for item := range strings.SplitSeq(list, ",") {
		ns := strings.TrimSpace(item)
		if ns == "" {
			continue
		}
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return nil, fmt.Errorf("namespace %q: %s", ns, strings.Join(errs, "; "))
		}
		out = append(out, ns)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// watchedCacheNamespaces is cache.Options.DefaultNamespaces for the watched
// namespaces: every informer (pipelines, replays and the labelled objects of
// CacheOptions) lists and watches each of them, never the whole cluster. Nil
// for every namespace.
func watchedCacheNamespaces(namespaces []string) map[string]cache.Config {
	if len(namespaces) == 0 {
		return nil
	}
	m := make(map[string]cache.Config, len(namespaces))
	for _, ns := range namespaces {
		m[ns] = cache.Config{}
	}
	return m
}

// WatchedOnly limits an uncached reader (the manager's APIReader, with which
// the operator reads Secrets and looks up names its cache doesn't know) to the
// watched namespaces: a Get or List anywhere else, or across all namespaces,
// (or of a cluster-scoped object) returns ErrNamespaceNotWatched and never reaches the API server. The cache
// already keeps pipelines of other namespaces from being reconciled; this keeps
// a read the reconcilers might one day make on another path from reaching
// further. With no namespaces, reader is returned as is.
func WatchedOnly(reader client.Reader, namespaces []string) client.Reader {
	if len(namespaces) == 0 {
		return reader
	}
	return &watchedReader{reader: reader, namespaces: slices.Clone(namespaces)}
}

type watchedReader struct {
	reader     client.Reader
	namespaces []string
}

func (w *watchedReader) check(ns string) error {
	if !slices.Contains(w.namespaces, ns) {
		if ns == "" {
			return fmt.Errorf("a read across namespaces or of a cluster-scoped object: %w", ErrNamespaceNotWatched)
		}
		return fmt.Errorf("%s: %w", ns, ErrNamespaceNotWatched)
	}
	return nil
}

func (w *watchedReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if err := w.check(key.Namespace); err != nil {
		return err
	}
	return w.reader.Get(ctx, key, obj, opts...)
}

func (w *watchedReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	lo := &client.ListOptions{}
	lo.ApplyOptions(opts)
	if err := w.check(lo.Namespace); err != nil {
		return err
	}
	return w.reader.List(ctx, list, opts...)
}
