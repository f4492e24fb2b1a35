#!/usr/bin/env bash
# Builds the envtest control plane (etcd + kube-apiserver) from the Go module proxy.
#
# No binary download site is reachable from our machines, so setup-envtest can't
# fetch its tarballs. Instead we compile pinned releases from source, in throwaway
# modules under $SLUICE_CACHE/build, and cache the binaries under
# $SLUICE_CACHE/k8s/<version>/ (SLUICE_CACHE defaults to ~/.cache/sluice, outside
# the clone, so fresh clones reuse them).
# A warm rebuild (Go build cache present) takes seconds; a cold one ~4 minutes.
#
# Usage: hack/build-envtest.sh [OUT_DIR]   (prints OUT_DIR, usable as KUBEBUILDER_ASSETS)
set -euo pipefail

ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
K8S_VERSION="${K8S_VERSION:-v1.37.2}"
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
OUT="${1:-$CACHE/k8s/$K8S_VERSION}"
WORK="$CACHE/build"
export GOFLAGS="${GOFLAGS:-} -mod=mod"
export GOTOOLCHAIN=local

mkdir -p "$OUT" "$WORK"

if [[ -x "$OUT/etcd" && -x "$OUT/kube-apiserver" ]] \
  && [[ "$(cat "$OUT/.versions" 2>/dev/null)" == "$ETCD_VERSION $K8S_VERSION" ]]; then
  echo "$OUT"
  exit 0
fi

build_etcd() {
  local dir="$WORK/etcd-$ETCD_VERSION"
  mkdir -p "$dir"
  cat >"$dir/go.mod" <<MOD
module sluice.local/etcdbuild

go 1.26

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
  cat >"$dir/tools.go" <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
  (cd "$dir" && go mod tidy -e >/dev/null 2>&1 || true; \
   cd "$dir" && go mod download go.etcd.io/etcd/server/v3 && \
   go build -tags tools -o "$OUT/etcd" go.etcd.io/etcd/server/v3)
}

build_apiserver() {
  local dir="$WORK/k8s-$K8S_VERSION"
  mkdir -p "$dir"
  # Staging modules are replaced by ./staging/... in k8s.io/kubernetes' own go.mod;
  # outside that repo they must point at their published v0.x tags instead.
  local gomod staging_ver
  gomod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')"
  staging_ver="v0.${K8S_VERSION#v1.}"
  {
    echo "module sluice.local/k8sbuild"
    echo
    echo "go 1.26"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    grep -E '^\s*k8s.io/[a-z0-9-]+ => \./staging/' "$gomod" \
      | awk -v v="$staging_ver" '{print "replace " $1 " => " $1 " " v}'
  } >"$dir/go.mod"
  cat >"$dir/tools.go" <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO
  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local ldflags="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
-X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
  (cd "$dir" && go mod tidy -e >/dev/null && \
   go build -tags tools -ldflags "$ldflags" -o "$OUT/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver)
}

build_etcd
build_apiserver
echo "$ETCD_VERSION $K8S_VERSION" >"$OUT/.versions"
echo "$OUT"
