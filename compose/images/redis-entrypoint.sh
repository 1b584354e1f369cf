#!/bin/sh
# Like the official redis image's entrypoint: `redis-server` without a config file listens with protected mode
# off (connections come from other containers and from the host through the published port, never loopback).
set -e
if [ "${1:-}" = "redis-server" ]; then
  shift
  case "${1:-}" in
    *.conf) exec redis-server "$@" ;;
    *) exec redis-server "$@" --protected-mode no ;;
  esac
fi
exec "$@"
