#!/usr/bin/env bash
# A single-node Kubernetes cluster with a real kubelet on this machine, without Docker.
#
# kind can't run on our VMs (Docker's privileged containers lack CAP_SYS_RESOURCE) and
# no binary download site or image registry is reachable. So etcd and the Kubernetes
# binaries are built from the Go module proxy (hack/build-envtest.sh, cached by version
# in $SLUICE_CACHE/k8s/<version>), containerd, runc, the CNI plugins and iptables are
# Debian's packages (installed when missing), and the pause image is hack/pause, built
# here and imported under the name containerd asks for. Needs root.
#
# Network: the cluster owns the bridge sluicebr0 with the gateway address 10.244.0.1/24.
# The API server and the kubelet listen there, pods get 10.244.0.2 and up, and a server
# on the host that pods must reach (the kfake broker, PostgreSQL, an HTTP sink) listens
# on 10.244.0.1 too. Nothing listens on the VM's own addresses: etcd and the components'
# health and metrics ports are on loopback. Service IPs (10.96.0.0/24) are blackholed
# on the host, so a pod's packet to a Service without endpoints (e.g. the DNS address:
# there is no DNS) never leaves the machine; pods are given IP addresses.
#
# State (PKI, configs, data, logs, PIDs) lives in $CLUSTER_STATE_DIR (default bin/cluster);
# `down` stops every process by PID and removes it, with the mounts, cgroups, bridge,
# iptables chains and host paths the components made.
#
# Usage: hack/cluster.sh <command>
#   up               start the cluster (or say it is up), wait until the node is Ready,
#                    print the admin kubeconfig path on stdout
#   down             stop the cluster and remove its state
#   status           what runs; exit 0 when up, 1 when down, 2 when partly up
#   kubeconfig       print the admin kubeconfig path
#   load-image TAR…  import docker-archive tarballs (make image) into the node's containerd
#   binaries         build (or reuse) the binaries only; print their folder
# Messages go to stderr; stdout carries only what a caller captures.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
K8S_VERSION="${K8S_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
BIN="${CLUSTER_BIN_DIR:-$CACHE/k8s/$K8S_VERSION}"
STATE="${CLUSTER_STATE_DIR:-$ROOT/bin/cluster}"
READY_TIMEOUT="${CLUSTER_READY_TIMEOUT:-120}"
STOP_TIMEOUT="${CLUSTER_STOP_TIMEOUT:-20}"

ADDR=10.244.0.1 # the bridge gateway: node, API server and host-side servers
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/24
SERVICE_IP=10.96.0.1 # the kubernetes Service: first address of SERVICE_CIDR
BRIDGE=sluicebr0
NODE=sluice-node
PAUSE_IMAGE=registry.k8s.io/pause:3.10 # containerd's sandbox_image
ETCD_PORT=12379 # not etcd's default 2379, so it can't collide with another etcd
# Start order (`status` lists them so).
COMPONENTS=(etcd kube-apiserver containerd kube-controller-manager kube-scheduler kube-proxy kubelet)
# Host paths that the kubelet, containerd and libcni create whatever their configured
# roots; `down` removes those that did not exist before `up`.
HOST_PATHS=(/var/lib/kubelet /var/log/containers /var/log/pods /var/lib/cni /run/containerd /etc/cni /opt/cni)
DEBIAN_PACKAGES=(containerd runc containernetworking-plugins iptables openssl)

log() { echo "cluster.sh: $*" >&2; }
die() {
  log "$*"
  exit 1
}

T0=$(date +%s.%N)
elapsed() { awk -v t0="$T0" -v t="$(date +%s.%N)" 'BEGIN {printf "%5.1fs", t - t0}'; }
step() { log "$(elapsed) $*"; }

# ------------------------------------------------------------------ prerequisites

need_root() { [[ $(id -u) -eq 0 ]] || die "needs root: it creates a bridge, iptables rules, mounts and cgroups"; }

install_packages() {
  local missing=() p
  for p in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  step "installing Debian packages: ${missing[*]}"
  # policy-rc.d 101: the packages must not start the system's own containerd.
  local policy=/usr/sbin/policy-rc.d created_policy=
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
  [[ -n $created_policy ]] && rm -f "$policy"
  return 0
}

cmd_binaries() {
  K8S_BINARIES="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl" \
    K8S_VERSION="$K8S_VERSION" ETCD_VERSION="$ETCD_VERSION" "$ROOT/hack/build-envtest.sh" "$BIN"
}

# The sandbox image: hack/pause, static, in a one-file image named $PAUSE_IMAGE.
build_pause_image() {
  mkdir -p "$STATE/images"
  (cd "$ROOT" &&
    CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "$STATE/images/pause" ./hack/pause &&
    go run ./hack/mkimage -base none -user "" -entrypoint /pause -tag "$PAUSE_IMAGE" \
      -o "$STATE/images/pause.tar" -add "$STATE/images/pause:/pause" >/dev/null)
}

# ------------------------------------------------------------------ processes

pidfile() { echo "$STATE/run/$1.pid"; }
pid_of() { # COMPONENT: its PID if it runs
  local f p
  f="$(pidfile "$1")"
  [[ -f $f ]] || return 1
  p="$(cat "$f")"
  kill -0 "$p" 2>/dev/null || return 1
  echo "$p"
}

start() { # COMPONENT COMMAND...: run in its own session, log to logs/COMPONENT.log
  local name="$1"
  shift
  setsid "$@" >"$STATE/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$(pidfile "$name")"
}

# wait_for COMPONENT DESCRIPTION COMMAND...: until COMMAND succeeds; fail early with the
# log's tail when COMPONENT died, or after READY_TIMEOUT seconds.
wait_for() {
  local name="$1" what="$2" deadline=$((SECONDS + READY_TIMEOUT))
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ! pid_of "$name" >/dev/null; then
      tail -n 20 "$STATE/logs/$name.log" >&2 || true
      die "$name exited before $what; its log: $STATE/logs/$name.log"
    fi
    ((SECONDS < deadline)) || die "no $what after ${READY_TIMEOUT}s; see $STATE/logs/$name.log"
    sleep 0.2
  done
  step "$what"
}

stop() { # COMPONENT...: SIGTERM to all at once, SIGKILL to those left after STOP_TIMEOUT s
  local c p i pids=() names=() deadline=$((SECONDS + STOP_TIMEOUT))
  for c in "$@"; do
    if p="$(pid_of "$c")"; then
      kill "$p" 2>/dev/null || true
      pids+=("$p") names+=("$c")
    fi
    rm -f "$(pidfile "$c")"
  done
  for ((i = 0; i < ${#pids[@]}; i++)); do
    while kill -0 "${pids[i]}" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  done
  for ((i = 0; i < ${#pids[@]}; i++)); do
    if kill -0 "${pids[i]}" 2>/dev/null; then
      log "${names[i]} (pid ${pids[i]}) still runs after ${STOP_TIMEOUT}s: SIGKILL"
      kill -9 "${pids[i]}" 2>/dev/null || true
    fi
  done
}

kubectl_admin() { "$BIN/kubectl" --kubeconfig "$STATE/admin.kubeconfig" "$@"; }
ctr_k8s() { ctr --address "$STATE/containerd/containerd.sock" --namespace k8s.io "$@"; }

node_ready() {
  [[ "$(kubectl_admin get node "$NODE" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}

# ------------------------------------------------------------------ configs

write_containerd_config() { # Debian's containerd 1.6: config version 2
  mkdir -p "$STATE/containerd" "$STATE/cni/net.d"
  cat >"$STATE/containerd/config.toml" <<EOF
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
[grpc]
  address = "$STATE/containerd/containerd.sock"
[ttrpc]
  address = "$STATE/containerd/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Pod network namespaces under the state dir, so down finds and unmounts them.
  netns_mounts_under_state_dir = true
  # Without it every sandbox fails here with "can't get final child's PID from pipe: EOF":
  # runc may not lower the OOM score adjustment below containerd's own in this VM.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
EOF
  # The bridge plugin attaches pods to our bridge; no masquerading: pods talk to the
  # host (10.244.0.1) and to each other only.
  cat >"$STATE/cni/net.d/10-sluice.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "sluice", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$ADDR"}]],
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$STATE/cni/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}},
  {"type": "firewall"}]}
EOF
}

write_kubelet_config() {
  mkdir -p "$STATE/kubelet"
  cat >"$STATE/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $ADDR
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
containerRuntimeEndpoint: unix://$STATE/containerd/containerd.sock
podLogsDir: $STATE/pod-logs
podCIDR: $POD_CIDR
clusterDomain: cluster.local
clusterDNS: [10.96.0.10]
# This VM: cgroup v1 (kubelet 1.35+ refuses it unless told), no systemd, swap not checked.
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $STATE/pki/ca.crt}
authorization: {mode: Webhook}
# A test machine's disk is often fuller than the 10-15 % defaults allow.
evictionHard: {memory.available: "100Mi", nodefs.available: "2%", imagefs.available: "2%"}
EOF
}

# ------------------------------------------------------------------ up

record_host_paths() { # which HOST_PATHS existed before up (down keeps those)
  local p
  : >"$STATE/host-paths-before"
  for p in "${HOST_PATHS[@]}"; do [[ -e $p ]] && echo "$p" >>"$STATE/host-paths-before"; done
  return 0
}

setup_network() {
  ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
  ip addr show dev "$BRIDGE" | grep -q " $ADDR/" || ip addr add "$ADDR/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  ip route replace blackhole "$SERVICE_CIDR"
}

start_etcd() {
  start etcd "$BIN/etcd" --name "$NODE" --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls http://127.0.0.1:12380 --initial-advertise-peer-urls http://127.0.0.1:12380 \
    --initial-cluster "$NODE=http://127.0.0.1:12380" --listen-metrics-urls http://127.0.0.1:12381 \
    --unsafe-no-fsync # a throwaway cluster: its data need not survive a power cut
}

start_apiserver() {
  local p="$STATE/pki"
  start kube-apiserver "$BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address="$ADDR" --secure-port=6443 --advertise-address="$ADDR" \
    --tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" --client-ca-file="$p/ca.crt" \
    --kubelet-client-certificate="$p/apiserver-kubelet-client.crt" --kubelet-client-key="$p/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP,Hostname \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$p/service-account.pub" --service-account-signing-key-file="$p/service-account.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction
}

start_control_plane() {
  local p="$STATE/pki"
  start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$STATE/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file="$p/service-account.key" --root-ca-file="$p/ca.crt" \
    --cluster-signing-cert-file="$p/ca.crt" --cluster-signing-key-file="$p/ca.key" \
    --service-cluster-ip-range="$SERVICE_CIDR"
  start kube-scheduler "$BIN/kube-scheduler" --kubeconfig="$STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig="$STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig="$STATE/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false
  # In-cluster clients (the operator) reach the API server at the kubernetes Service IP.
  start kube-proxy "$BIN/kube-proxy" --kubeconfig="$STATE/kube-proxy.kubeconfig" \
    --hostname-override="$NODE" --proxy-mode=iptables --cluster-cidr="$POD_CIDR" \
    --conntrack-max-per-core=0 --metrics-bind-address=127.0.0.1:10249 --healthz-bind-address=127.0.0.1:10256
}

cmd_up() {
  need_root
  local state
  state="$(component_states)"
  if [[ $state == up ]]; then
    log "already up; kubeconfig: $STATE/admin.kubeconfig"
    echo "$STATE/admin.kubeconfig"
    return 0
  fi
  [[ $state == down ]] || die "partly up ($state); run: hack/cluster.sh down"
  install_packages
  step "building (or reusing) the binaries in $BIN"
  cmd_binaries >/dev/null
  step "binaries ready"
  # A state dir without processes is what a crashed cluster leaves behind.
  [[ ! -d $STATE ]] || cmd_down
  mkdir -p "$STATE/run" "$STATE/logs"
  build_pause_image
  step "pause image built"
  T0=$(date +%s.%N) # the timings below are the cluster's own start-up
  record_host_paths
  setup_network
  "$ROOT/hack/cluster/pki.sh" "$STATE" "$ADDR" "$NODE" "$SERVICE_IP"
  step "PKI and kubeconfigs"
  write_containerd_config
  write_kubelet_config

  start_etcd
  wait_for etcd "etcd healthy" curl -sf "http://127.0.0.1:$ETCD_PORT/health"
  start_apiserver
  start containerd containerd --config "$STATE/containerd/config.toml"
  wait_for containerd "containerd up" ctr --address "$STATE/containerd/containerd.sock" version
  ctr_k8s images import "$STATE/images/pause.tar" >/dev/null
  step "pause image imported"
  wait_for kube-apiserver "API server ready" kubectl_admin get --raw /readyz
  start_control_plane
  start kubelet "$BIN/kubelet" --config="$STATE/kubelet/config.yaml" \
    --kubeconfig="$STATE/kubelet.kubeconfig" --root-dir="$STATE/kubelet/root" \
    --cert-dir="$STATE/kubelet/pki" --hostname-override="$NODE" --node-ip="$ADDR"
  wait_for kubelet "node Ready" node_ready
  # Pods can be created once the controller-manager made the default ServiceAccount.
  wait_for kube-controller-manager "default ServiceAccount" kubectl_admin get serviceaccount default
  log "up; export KUBECONFIG=$STATE/admin.kubeconfig PATH=$BIN:\$PATH"
  echo "$STATE/admin.kubeconfig"
}

# ------------------------------------------------------------------ down

# shim_pids: containerd-shim processes of our containerd. They outlive it by design
# (so that containers survive a containerd restart); each names our socket.
shim_pids() {
  local d
  for d in /proc/[0-9]*; do
    tr '\0' ' ' 2>/dev/null <"$d/cmdline" | grep -q "containerd-shim.* -address $STATE/containerd/containerd.sock " &&
      echo "${d#/proc/}"
  done
  return 0
}

# kill_pods: SIGKILL each container's init process (a child of its shim; the kernel then
# kills the rest of the container's PID namespace), then the shims. Asking containerd
# to kill and delete each task took ~5 s a pod here; nothing of the pods is kept.
kill_pods() {
  local shims shim p
  shims="$(shim_pids)"
  for shim in $shims; do
    for p in $(pgrep -P "$shim"); do kill -9 "$p" 2>/dev/null || true; done
  done
  for shim in $shims; do kill -9 "$shim" 2>/dev/null || true; done
}

unmount_state() { # deepest first
  local m
  awk -v d="$STATE/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
}

remove_cgroups() { # the kubelet's pod cgroups (cgroupfs driver), deepest first
  local d
  for d in /sys/fs/cgroup/*/kubepods; do
    [[ -d $d ]] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  return 0
}

# remove_iptables_chains: the KUBE-* chains of the kubelet and kube-proxy and the CNI-*
# chains of the CNI plugins, with the jumps to them from the built-in chains.
remove_iptables_chains() {
  local ipt t chains c
  for ipt in iptables ip6tables; do
    command -v "$ipt-save" >/dev/null || continue
    for t in filter nat mangle; do
      # Jumps from the built-in chains, as delete commands (eval: rules quote their comments).
      "$ipt-save" -t "$t" 2>/dev/null | sed -nE '/^-A (KUBE|CNI)-/d; s/^-A ([A-Z]+ .*-j (KUBE|CNI)-)/-D \1/p' |
        while read -r rule; do eval "$ipt -t $t $rule" 2>/dev/null || true; done
      chains="$("$ipt-save" -t "$t" 2>/dev/null | awk '/^:(KUBE|CNI)-/ {print substr($1, 2)}')"
      for c in $chains; do "$ipt" -t "$t" -F "$c" 2>/dev/null || true; done
      for c in $chains; do "$ipt" -t "$t" -X "$c" 2>/dev/null || true; done
    done
  done
}

remove_host_paths() {
  local p
  for p in "${HOST_PATHS[@]}"; do
    grep -qxF "$p" "$STATE/host-paths-before" 2>/dev/null && continue
    rm -rf "$p"
  done
}

cmd_down() {
  need_root
  if [[ ! -d $STATE ]]; then
    log "no cluster state in $STATE: nothing to stop"
    return 0
  fi
  # The node first (so the kubelet restarts nothing), then the pods, then the API
  # server before its etcd.
  stop kubelet kube-proxy kube-scheduler kube-controller-manager
  kill_pods
  stop containerd
  kill_pods # shims that started while containerd stopped
  stop kube-apiserver
  stop etcd
  if [[ -x $BIN/kube-proxy ]]; then "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true; fi
  unmount_state
  remove_cgroups
  ip link del "$BRIDGE" 2>/dev/null || true
  ip route del blackhole "$SERVICE_CIDR" 2>/dev/null || true
  remove_iptables_chains
  remove_host_paths
  rm -rf "$STATE"
  step "down"
}

# ------------------------------------------------------------------ status

component_states() { # "up", "down", or the components that don't run
  local c running=() stopped=()
  for c in "${COMPONENTS[@]}"; do
    if pid_of "$c" >/dev/null; then running+=("$c"); else stopped+=("$c"); fi
  done
  if [[ ${#running[@]} -eq 0 ]]; then echo down
  elif [[ ${#stopped[@]} -eq 0 ]]; then echo up
  else echo "not running: ${stopped[*]}"
  fi
}

cmd_status() {
  local c p
  for c in "${COMPONENTS[@]}"; do
    if p="$(pid_of "$c")"; then
      printf '%-24s running (pid %s)\n' "$c" "$p"
    else
      printf '%-24s not running\n' "$c"
    fi
  done
  case "$(component_states)" in
  up)
    if node_ready; then echo "node $NODE Ready; kubeconfig $STATE/admin.kubeconfig"; else echo "node $NODE not Ready"; fi
    return 0
    ;;
  down) return 1 ;;
  *) return 2 ;;
  esac
}

cmd_load_image() {
  [[ $# -gt 0 ]] || die "usage: hack/cluster.sh load-image TAR..."
  [[ "$(component_states)" == up ]] || die "the cluster is not up: hack/cluster.sh up"
  local t
  for t in "$@"; do
    [[ -f $t ]] || die "$t: no such file (make image writes it)"
    ctr_k8s images import "$t" >&2 || die "importing $t failed"
  done
}

main() {
  local cmd="${1:-}"
  shift || true
  case "$cmd" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  kubeconfig) echo "$STATE/admin.kubeconfig" ;;
  load-image) cmd_load_image "$@" ;;
  binaries) cmd_binaries ;;
  *) sed -n '/^# Usage:/,/^# Messages/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
}

main "$@"
