package controllers

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func TestParseWatchNamespaces(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "", want: nil},
		{in: " , ,", want: nil},
		{in: "shop", want: []string{"shop"}},
		{in: "shop,billing", want: []string{"billing", "shop"}},
		{in: " shop , billing,, shop ", want: []string{"billing", "shop"}},
		{in: "team-a,Team-B", wantErr: `namespace "Team-B"`},
		{in: "a/b", wantErr: `namespace "a/b"`},
		{in: strings.Repeat("n", 64), wantErr: "must be no more than 63"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseWatchNamespaces(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseWatchNamespaces(%q) = %q, %v; want an error with %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("ParseWatchNamespaces(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestCacheOptionsWatchOnlyTheGivenNamespaces(t *testing.T) {
	if got := CacheOptions().DefaultNamespaces; got != nil {
		t.Errorf("CacheOptions() caches %v, want every namespace (nil)", got)
	}
	got := CacheOptions("billing", "shop").DefaultNamespaces
	if len(got) != 2 {
		t.Fatalf("CacheOptions(billing, shop) caches %v", got)
	}
	for _, ns := range []string{"billing", "shop"} {
		if _, ok := got[ns]; !ok {
			t.Errorf("CacheOptions(billing, shop) doesn't cache %s: %v", ns, got)
		}
	}
}

// The admin client of the suite could read every Secret: WatchedOnly must
// refuse those outside the watched namespaces itself.
func TestWatchedOnlyReadsNothingOutsideTheWatchedNamespaces(t *testing.T) {
	ctx := context.Background()
	watched, other := newNamespace(t), newNamespace(t)
	for _, ns := range []string{watched, other} {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "kafka-user", Namespace: ns}}
		if err := k8s.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	apiReader, err := client.New(restConfig, client.Options{Scheme: k8s.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	r := WatchedOnly(apiReader, []string{watched})

	if err := r.Get(ctx, client.ObjectKey{Namespace: watched, Name: "kafka-user"}, &corev1.Secret{}); err != nil {
		t.Errorf("Get in the watched namespace: %v", err)
	}
	if err := r.List(ctx, &corev1.SecretList{}, client.InNamespace(watched)); err != nil {
		t.Errorf("List in the watched namespace: %v", err)
	}
	for name, read := range map[string]func() error{
		"Get in another namespace": func() error {
			return r.Get(ctx, client.ObjectKey{Namespace: other, Name: "kafka-user"}, &corev1.Secret{})
		},
		"List in another namespace": func() error { return r.List(ctx, &corev1.SecretList{}, client.InNamespace(other)) },
		"List across namespaces":    func() error { return r.List(ctx, &corev1.SecretList{}) },
		"Get of a cluster-scoped object": func() error {
			return r.Get(ctx, client.ObjectKey{Name: other}, &corev1.Namespace{})
		},
	} {
		if err := read(); !errors.Is(err, ErrNamespaceNotWatched) {
			t.Errorf("%s: %v, want ErrNamespaceNotWatched", name, err)
		}
	}
	if WatchedOnly(apiReader, nil) != apiReader {
		t.Error("WatchedOnly without namespaces wraps the reader")
	}
}
