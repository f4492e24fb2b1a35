#!/usr/bin/env bash
# Builds the envtest control plane (etcd + kube-apiserver) from the Go module proxy,
# and with K8S_BINARIES the other binaries of the local cluster (hack/cluster.sh).
#
# No binary download site is reachable from our machines, so setup-envtest can't
# fetch its tarballs. Instead we compile pinned releases from source, in throwaway
# modules under $SLUICE_CACHE/build, and cache the binaries under
# $SLUICE_CACHE/k8s/<version>/ (SLUICE_CACHE defaults to ~/.cache/sluice, outside
# the clone, so fresh clones reuse them).
# A warm rebuild (Go build cache present) takes seconds; a cold one ~4 minutes, ~6
# with all the cluster binaries (they share most packages, so one `go build` of all
# of them costs far less than separate builds).
#
# Usage: [K8S_BINARIES="kube-apiserver kubelet ..."] hack/build-envtest.sh [OUT_DIR]
#   (prints OUT_DIR, usable as KUBEBUILDER_ASSETS; K8S_BINARIES defaults to kube-apiserver)
set -euo pipefail

ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
K8S_VERSION="${K8S_VERSION:-v1.37.2}"
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
OUT="${1:-$CACHE/k8s/$K8S_VERSION}"
read -r -a K8S_BINARIES <<<"${K8S_BINARIES:-kube-apiserver}"
# Every command the k8s module may build: tools.go imports them all, so `go mod
# tidy` sets the module up once whichever subset is built.
ALL_K8S_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
WORK="$CACHE/build"
export GOFLAGS="${GOFLAGS:-} -mod=mod"
export GOTOOLCHAIN=local

mkdir -p "$OUT" "$WORK"

if [[ "$(cat "$OUT/.versions" 2>/dev/null)" != "$ETCD_VERSION $K8S_VERSION" ]]; then
  rm -f "$OUT/.versions" "$OUT/etcd" "${ALL_K8S_CMDS[@]/#/$OUT/}"
fi
MISSING_K8S=()
for b in "${K8S_BINARIES[@]}"; do [[ -x "$OUT/$b" ]] || MISSING_K8S+=("$b"); done
if [[ -x "$OUT/etcd" && ${#MISSING_K8S[@]} -eq 0 ]]; then
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

build_k8s() { # CMD...: one `go build` of the given k8s.io/kubernetes/cmd/<CMD>
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
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "${ALL_K8S_CMDS[@]}"
    printf ')\n'
  } >"$dir/tools.go"
  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local ldflags="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
-X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
  (cd "$dir" && go mod tidy -e >/dev/null && \
   go build -tags tools -ldflags "$ldflags" -o "$OUT/" "${@/#/k8s.io/kubernetes/cmd/}")
}

[[ -x "$OUT/etcd" ]] || build_etcd
[[ ${#MISSING_K8S[@]} -eq 0 ]] || build_k8s "${MISSING_K8S[@]}"
echo "$ETCD_VERSION $K8S_VERSION" >"$OUT/.versions"
echo "$OUT"
