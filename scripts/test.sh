#!/usr/bin/env bash
# Sets up what is missing, then runs every test (unit and integration with real HAProxy).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH:/usr/sbin"
.venv/bin/ruff check src tests bench scripts
.venv/bin/mypy src
# two workers, each test file on one of them (its module fixtures made once): the
# integration tests mostly wait on health checks and builds, so two share 2 cores well
exec .venv/bin/python -m pytest -q -n "${HEADWAY_TEST_WORKERS:-2}" --dist loadfile "$@"
