#!/usr/bin/env bash
# Credentials of the local cluster (hack/cluster.sh): one CA, a serving certificate for
# the API server, a client certificate and kubeconfig per component, and the service
# account signing key pair. ECDSA P-256 keys: each takes milliseconds to make, RSA 2048
# about a tenth of a second.
#
# Usage: hack/cluster/pki.sh STATE_DIR API_ADDR NODE_NAME SERVICE_IP
#   writes STATE_DIR/pki/* and STATE_DIR/<component>.kubeconfig
set -euo pipefail

STATE="$1" ADDR="$2" NODE="$3" SERVICE_IP="$4"
PKI="$STATE/pki"
mkdir -p "$PKI"
cd "$PKI"

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }

newkey ca
openssl req -x509 -new -key ca.key -subj "/CN=sluice-local-ca" -days 3650 -out ca.crt

# cert NAME SUBJECT [SANS]: a certificate signed by the CA; with SANS a server certificate.
cert() {
  local name="$1" subject="$2" sans="${3:-}"
  newkey "$name"
  openssl req -new -key "$name.key" -subj "$subject" -out "$name.csr"
  if [[ -n "$sans" ]]; then
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$sans" >"$name.ext"
  else
    printf 'extendedKeyUsage=clientAuth\n' >"$name.ext"
  fi
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
    -extfile "$name.ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

# The in-cluster name and Service IP, and the bridge address the host and pods dial.
cert apiserver "/CN=kube-apiserver" \
  "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:$SERVICE_IP,IP:$ADDR"
cert admin "/O=system:masters/CN=sluice-local-admin"
cert controller-manager "/CN=system:kube-controller-manager"
cert scheduler "/CN=system:kube-scheduler"
cert kubelet "/O=system:nodes/CN=system:node:$NODE"
cert kube-proxy "/CN=system:kube-proxy"
# The API server also authenticates to the kubelet (logs, exec) with a client certificate.
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"

newkey service-account
openssl pkey -in service-account.key -pubout -out service-account.pub

b64() { base64 -w0 "$1"; }
for who in admin controller-manager scheduler kubelet kube-proxy; do
  cat >"$STATE/$who.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: sluice-local
  cluster:
    server: https://$ADDR:6443
    certificate-authority-data: $(b64 ca.crt)
users:
- name: $who
  user:
    client-certificate-data: $(b64 "$who.crt")
    client-key-data: $(b64 "$who.key")
contexts:
- name: sluice-local
  context: {cluster: sluice-local, user: $who}
current-context: sluice-local
EOF
done
chmod 600 "$PKI"/*.key "$STATE"/*.kubeconfig
