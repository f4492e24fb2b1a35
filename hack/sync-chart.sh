#!/usr/bin/env bash
# Copies into charts/sluice what the chart must take from config/ as it is, so
# the two installs can't drift: the CRDs (Helm installs crds/ verbatim), the
# rules of the roles (the manager's are generated from the +kubebuilder:rbac
# markers), the alert rules and, once there is one, the Grafana dashboard. `make
# manifests` runs it after controller-gen; `make verify-generated` fails when a
# copy is stale. Never edit the copies: edit config/ and run `make manifests`.
set -euo pipefail
cd "$(dirname "$0")/.."
chart=charts/sluice

# Start from nothing, so a file config/ no longer has leaves the chart too.
rm -rf "$chart/crds" "$chart/files" "$chart/dashboards"
mkdir -p "$chart/crds" "$chart/files/rbac"
cp config/crd/bases/*.yaml "$chart/crds/"
# role.yaml, leader_election_role.yaml, metrics_auth_role.yaml,
# metrics_reader_role.yaml, *_editor_role.yaml, *_viewer_role.yaml.
cp config/rbac/*role.yaml "$chart/files/rbac/"
cp config/prometheus/rules.yaml "$chart/files/rules.yaml"

shopt -s nullglob
dashboards=(config/grafana/*.json)
if ((${#dashboards[@]})); then
  mkdir -p "$chart/dashboards"
  cp "${dashboards[@]}" "$chart/dashboards/"
fi
