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
command -v kubectl >/dev/null 2>&1 || missing+=(kubectl)

if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: ok (redis-server, postgresql, node, npm, kubectl present)"
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
echo "system packages: installed ${missing[*]}"
