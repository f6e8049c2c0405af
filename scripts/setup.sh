#!/usr/bin/env bash
# Installs what Headway and its tests need on Debian 12: HAProxy, wrk, Prometheus (for
# promtool and the monitoring tests), PostgreSQL and Redis (accessories) from apt, and a
# virtualenv in .venv with Headway and its dev tools (pip). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v haproxy >/dev/null && ! [ -x /usr/sbin/haproxy ] || ! command -v wrk >/dev/null \
    || ! command -v promtool >/dev/null || ! command -v redis-server >/dev/null \
    || ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq haproxy wrk prometheus postgresql redis-server >/dev/null
fi
if ! [ -x .venv/bin/headway ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
fi
set -o pipefail
.venv/bin/pip install -q -e '.[dev]' 2>&1 | grep -v '^WARNING: Location' || test "${PIPESTATUS[0]}" -eq 0
