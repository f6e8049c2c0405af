#!/usr/bin/env bash
# Installs what Headway and its tests need on Debian 12: HAProxy, wrk, Prometheus (for
# promtool and the monitoring tests), PostgreSQL and Redis (accessories), podman, debootstrap
# (stand-in base images), docker-registry, docker.io (the Docker runtime), pebble (a local
# ACME server), openssh-server (test hosts), chromium + chromium-driver (the dashboard's
# browser test) and kubectl from apt, and a
# virtualenv in .venv with Headway and its dev tools (pip). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v haproxy >/dev/null && ! [ -x /usr/sbin/haproxy ] || ! command -v wrk >/dev/null \
    || ! command -v promtool >/dev/null || ! command -v redis-server >/dev/null \
    || ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null \
    || ! command -v podman >/dev/null || ! command -v docker-registry >/dev/null \
    || ! [ -x /usr/sbin/debootstrap ] || ! [ -x /usr/sbin/dockerd ] || ! command -v pebble >/dev/null \
    || ! [ -x /usr/sbin/sshd ] || ! [ -x /usr/bin/chromedriver ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq haproxy wrk prometheus postgresql redis-server podman runc \
    debootstrap docker-registry docker.io pebble openssh-server chromium chromium-driver >/dev/null
fi
# kubectl renders kustomize overlays offline; some machines have Google's already
command -v kubectl >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq kubernetes-client >/dev/null; }
# podman on these machines: runc (crun fails on this kernel's hybrid cgroups), cgroupfs, and
# ulimits the machine allows (../shared/ENVIRONMENT.md)
if ! grep -q 'runtime = "runc"' /etc/containers/containers.conf 2>/dev/null; then
  mkdir -p /etc/containers
  cat > /etc/containers/containers.conf <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=20000:20000"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
fi
if ! [ -x .venv/bin/headway ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
fi
set -o pipefail
.venv/bin/pip install -q -e '.[dev]' 2>&1 | grep -v '^WARNING: Location' || test "${PIPESTATUS[0]}" -eq 0
