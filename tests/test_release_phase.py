"""The release phase: [release] command runs once per deploy, with the new release's code,
env and secrets, before any instance of it starts or traffic moves; a failing one fails the
deploy with its output, and traffic stays. Real HAProxy and processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import App

pytestmark = pytest.mark.integration  # real HAProxy and processes

MIGRATE = '''import json, os, urllib.request
try:
    served = json.load(urllib.request.urlopen(os.environ["ROUTER_URL"], timeout=5))["version"]
except OSError:
    served = "none"
secret = "secret-ok" if os.environ.get("DB_PASSWORD") == "pw" else "secret-missing"
with open(os.environ["MIGRATIONS_LOG"], "a") as log:
    log.write(f"{os.environ['HEADWAY_RELEASE']} {open('VERSION').read().strip()} "
              f"served={served} {secret}\\n")
if os.path.exists("FAIL_MIGRATION"):
    raise SystemExit("migration 0042 failed: column users.email already exists")
print("migrated", flush=True)
'''


def setup(app: App, tmp: Path) -> Path:
    log = tmp / "migrations.log"
    (app.dir / "migrate.py").write_text(MIGRATE)
    app.configure(release='command = "python3 migrate.py"',
                  env=f'MIGRATIONS_LOG = "{log}"\nROUTER_URL = "{app.url}"')
    subprocess.run([sys.executable, "-m", "headway", "secrets", "set", "DB_PASSWORD"],
                   input="pw", cwd=app.dir, env=app.env(), check=True, capture_output=True,
                   text=True)
    return log


def test_release_command_runs_once_before_traffic_moves(app: App, shared_tmp: Path) -> None:
    log = setup(app, shared_tmp)
    app.run("deploy")
    app.set_version("v2")
    plan = app.run("deploy", "--dry-run").stdout
    assert "1. run the release command (before any traffic moves)" in plan
    app.run("deploy")
    assert log.read_text().splitlines() == [
        "1 v1 served=none secret-ok",  # first deploy: nothing served yet
        "2 v2 served=v1 secret-ok",  # v2's code ran while v1 still had all the traffic
    ]
    assert app.version() == "v2"
    assert "`python3 migrate.py` exited 0" in app.run("events").stdout


def test_failing_release_command_fails_the_deploy_and_traffic_stays(app: App,
                                                                    shared_tmp: Path) -> None:
    log = setup(app, shared_tmp)
    app.run("deploy")
    app.set_version("v2")
    (app.dir / "FAIL_MIGRATION").write_text("")
    result = app.run("deploy", check=False)
    assert result.returncode == 4
    assert "release command `python3 migrate.py` exited 1; no traffic moved" in result.stderr
    assert "migration 0042 failed: column users.email already exists" in result.stderr
    assert app.version() == "v1"
    insts = json.loads(app.run("status", "--json").stdout)["instances"]
    assert {i["release"] for i in insts} == {1}  # release 2 never started an instance
    assert len(log.read_text().splitlines()) == 2
    rels = {r["number"]: r["status"] for r in json.loads(app.run("releases", "--json").stdout)}
    assert rels == {1: "active", 2: "failed"}
