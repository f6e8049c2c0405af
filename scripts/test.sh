#!/usr/bin/env bash
# Sets up what is missing, then runs every test (unit and integration with real HAProxy).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH:/usr/sbin"
.venv/bin/ruff check src tests bench scripts
.venv/bin/mypy src
exec .venv/bin/python -m pytest -q "$@"
