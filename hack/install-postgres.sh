#!/usr/bin/env bash
# Installs the PostgreSQL server from Debian's packages when it isn't there; the
# sink and crash tests start their own server from these binaries (internal/testpg).
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  echo "PostgreSQL server present: $(ls -d /usr/lib/postgresql/*/bin | tail -1)"
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "PostgreSQL server binaries missing; install them as root: apt-get install postgresql" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql >/dev/null
echo "installed PostgreSQL server: $(ls -d /usr/lib/postgresql/*/bin | tail -1)"
