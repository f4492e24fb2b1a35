#!/usr/bin/env bash
# Fails when the generated CRD, RBAC or deepcopy code doesn't match the markers,
# or the chart's copies of them (hack/sync-chart.sh) don't match config/.
# It regenerates into a copy of the work tree and compares, so it checks the tree
# as it is (committed or not) and never touches it.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CONTROLLER_GEN="${CONTROLLER_GEN:?set CONTROLLER_GEN to the controller-gen binary}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

cd "$ROOT"
# Tracked files plus new, not-ignored ones: what the next commit would hold.
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [[ -e "$f" ]] && cp --parents "$f" "$tmp/"
done

generated=(api/v1alpha1/zz_generated.deepcopy.go config/crd/bases config/rbac/role.yaml
  charts/sluice/crds charts/sluice/files charts/sluice/dashboards)
# Start from nothing, so a stale file the generators no longer write shows up too.
(cd "$tmp" && rm -rf "${generated[@]}" && mkdir -p config/crd/bases \
  && make -s generate manifests CONTROLLER_GEN="$CONTROLLER_GEN" >/dev/null)

status=0
for g in "${generated[@]}"; do
  # Neither has it (no dashboard yet): nothing to compare.
  if [[ ! -e "$g" && ! -e "$tmp/$g" ]]; then continue; fi
  if ! diff -ru "$g" "$tmp/$g"; then status=1; fi
done
if [[ $status -ne 0 ]]; then
  echo "Generated files are stale: run 'make generate manifests' and commit the result." >&2
  exit 1
fi
echo "Generated files are up to date."
