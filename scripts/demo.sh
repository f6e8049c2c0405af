#!/usr/bin/env bash
# The main job, on a fresh machine: install what is missing, deploy the bundled example (v1),
# deploy v2 under load, try a broken release (refused), roll back, and show what the load saw.
# `bash scripts/demo.sh podman`: the same with containers (images built by Headway).
set -euo pipefail
runtime="${1:-process}"
case "$runtime" in process|podman) ;; *) echo "usage: $0 [process|podman]" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH:/usr/sbin"
export HEADWAY_HOME="$PWD/.headway/demo-home"
work="$PWD/.headway/demo-app"
[ -d "$work" ] && (cd "$work" && headway destroy --yes >/dev/null 2>&1 || true)
rm -rf "$work" "$HEADWAY_HOME" && mkdir -p "$(dirname "$work")"
if [ "$runtime" = podman ]; then
  echo "No registry is reachable here: stand-ins for the official python base image are"
  echo "built once from Debian packages (tests/images.py, about a minute the first time)."
  .venv/bin/python -c "from tests import images; images.ensure()"
fi
cp -r examples/hello "$work" && cd "$work"
sed -i "s/runtime = \"process\"/runtime = \"$runtime\"/" headway.toml

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
step "deploy v1 of examples/hello ($runtime runtime: builds its virtualenv or image)"
headway deploy
curl -s http://127.0.0.1:18080/ && echo

step "constant load through the router for 25 s (wrk, 16 connections) while we:"
wrk -t2 -c16 -d25s --latency http://127.0.0.1:18080/ > "$work/wrk.txt" &
load=$!
sleep 2
step "1. deploy v2 (blue-green)"
echo v2 > VERSION
headway deploy
step "2. deploy a broken v3 (it exits at start): refused, traffic stays on v2"
echo v3 > VERSION && echo crash > BROKEN
headway deploy || echo "(headway deploy exited $? as it should)"
rm BROKEN
step "3. roll back to v1 (a warm release: a traffic switch)"
headway rollback
curl -s http://127.0.0.1:18080/ && echo
wait $load

step "what the load saw"
grep -E "requests in|Non-2xx|Socket errors|99%" "$work/wrk.txt" || true
grep -q -E "Non-2xx|Socket errors" "$work/wrk.txt" && echo "FAILED REQUESTS SEEN" \
  || echo "0 failed requests"
step "headway releases / status"
headway releases
headway status
echo
echo "The app is still running on http://127.0.0.1:18080/ ; stop it with:"
echo "  cd $work && HEADWAY_HOME=$HEADWAY_HOME headway destroy --yes   (.venv/bin on PATH)"
