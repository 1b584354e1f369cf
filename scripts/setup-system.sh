#!/usr/bin/env bash
# Installs the system packages a fresh machine lacks: redis-server and PostgreSQL (server binaries), Node.js/npm,
# and kubectl (tests/deploy renders deploy/k8s with `kubectl kustomize`).
# Idempotent: does nothing when they are present.
set -euo pipefail
# shellcheck source=lib/apt.sh
source "$(dirname "$0")/lib/apt.sh"

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  missing+=(postgresql)
fi
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# network-namespace test hosts (harness/util/nethosts.py: Locust across hosts, tests and benchmark)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)

# kubectl is only for tests/deploy (rendering deploy/k8s); the package is not in every Debian archive, so its
# absence is said, not fatal: the harness itself never needs it.
install_kubectl() {
  command -v kubectl >/dev/null 2>&1 && return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt_install kubectl >/dev/null 2>&1 || apt_install kubernetes-client >/dev/null 2>&1 || true
  fi
  command -v kubectl >/dev/null 2>&1 \
    || echo "kubectl: not installed and not installable here — tests/deploy's render test will fail; install kubectl" >&2
}

if [ ${#missing[@]} -eq 0 ]; then
  install_kubectl
  echo "system packages: ok (redis-server, postgresql, node, npm, ip, iptables present)"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${missing[*]} — install them (e.g. sudo apt-get install -y ${missing[*]}) and run make setup again" >&2
  exit 2
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing system packages: ${missing[*]} — this machine has no apt-get; install them with its package manager" >&2
  exit 2
fi

echo "installing system packages: ${missing[*]}"
apt_install "${missing[@]}"
# The Debian packages start services of their own; the harness runs its own servers on free ports.
for svc in redis-server postgresql; do
  if command -v service >/dev/null 2>&1; then service "$svc" stop >/dev/null 2>&1 || true; fi
done
install_kubectl
echo "system packages: installed ${missing[*]}"
