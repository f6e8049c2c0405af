"""One-off commands run in the release's own runtime: the release command (migrations) in the
release's image under podman, with its dependencies, env, secrets and accessories; `headway
run` and `headway exec` with exit codes passed through, a TTY when stdin is one, env and
secrets inside and none printed. Real HAProxy, processes, podman and PostgreSQL."""

from __future__ import annotations

import json
import os
import secrets as random
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from headway.errors import RuntimeFailure
from headway.runtime.process import release_env, run_command
from headway.store import Release
from tests.conftest import ROOT, App
from tests.test_containers import base_images, podman, podman_app  # noqa: F401 - fixtures

# Checks what a one-off command sees, prints a verdict (never the secret), exits with argv[1].
CHECK = '''import os, sys
token = os.environ.get("API_TOKEN")
print("tty" if sys.stdin.isatty() else "no-tty", os.environ.get("GREETING"),
      "secret-ok" if token and token.startswith("tok-") else "secret-missing", os.environ.get("HEADWAY_RELEASE"), os.environ.get("HEADWAY_INSTANCE", ""),
      flush=True)
sys.exit(int(sys.argv[1]))
'''

# A migration that only works inside the release's image: its dependencies, its user, its
# folder, and the accessory reachable on the host's loopback.
MIGRATE = '''import os, socket, urllib.parse
import fastapi  # installed in the image only
url = urllib.parse.urlsplit(os.environ["DATABASE_URL"])
socket.create_connection((url.hostname, url.port), timeout=5).close()
assert os.environ["API_TOKEN"], "no secret"
print("migrated in", os.getcwd(), "as", os.getuid(), "with fastapi", fastapi.__version__,
      "greeting", os.environ["GREETING"], flush=True)
'''


def setup(app: App) -> str:
    token = f"tok-{random.token_hex(12)}"
    (app.dir / "check.py").write_text(CHECK)
    app.configure(env='GREETING = "hi"')
    subprocess.run([sys.executable, "-m", "headway", "secrets", "set", "API_TOKEN"],
                   input=token, cwd=app.dir, env=app.env(), check=True, capture_output=True,
                   text=True)
    return token


def in_tty(app: App, *args: str) -> subprocess.CompletedProcess[str]:
    """`headway ARGS` with a terminal as its stdin (script(1) gives it a pty)."""
    cmd = shlex.join([sys.executable, "-m", "headway", *args])
    return subprocess.run(["script", "-qec", cmd, "/dev/null"], cwd=app.dir, env=app.env(),
                          capture_output=True, text=True, timeout=120, check=False,
                          stdin=subprocess.DEVNULL)


def check_run_and_exec(app: App, token: str, *, release: str) -> None:
    ran = app.run("run", "--", "python3", "check.py", "3", check=False)
    assert ran.returncode == 3, ran.stderr
    assert ran.stdout.split() == ["no-tty", "hi", "secret-ok", release]
    tty = in_tty(app, "run", "--", "python3", "check.py", "4")
    assert tty.returncode == 4, tty.stdout
    # a pty echoes the EOF script(1) sends as ^@ under podman
    assert tty.stdout.replace("^@", "").split()[:4] == ["tty", "hi", "secret-ok", release]
    web = next(i for i in json.loads(app.run("status", "--json").stdout)["instances"]
               if i["process"] == "web")
    inside = app.run("exec", web["id"], "--", "python3", "check.py", "5", check=False)
    assert inside.returncode == 5, inside.stderr
    assert inside.stdout.split() == ["no-tty", "hi", "secret-ok", release, web["id"]]
    default = app.run("exec", "--", "python3", "check.py", "0")
    assert default.stdout.split()[:4] == ["no-tty", "hi", "secret-ok", release]
    assert in_tty(app, "exec", "--", "python3", "check.py", "6").returncode == 6
    for result in (ran, tty, inside, default):
        assert token not in result.stdout + result.stderr
    missing = app.run("run", "--release", "9", "--", "true", check=False)
    assert missing.returncode == 7 and "no release 9" in missing.stderr
    gone = app.run("exec", "web-r9-000000", "--", "true", check=False)
    assert gone.returncode == 7 and "no running instance web-r9-000000" in gone.stderr


@pytest.mark.integration
def test_run_and_exec_on_the_process_runtime(app: App) -> None:
    token = setup(app)
    app.configure(release='command = "python3 -c \\"import fastapi\\""')  # in its virtualenv
    app.run("deploy")
    check_run_and_exec(app, token, release="1")
    no_command = app.run("run", check=False)
    assert no_command.returncode == 2 and "no command given" in no_command.stderr


@pytest.mark.integration
def test_release_command_run_and_exec_in_the_image_and_a_timeout(podman_app: App) -> None:  # noqa: F811
    app = podman_app
    token = setup(app)
    (app.dir / "migrate.py").write_text(MIGRATE)
    app.configure(release='command = "python3 migrate.py"', accessories__db='type = "postgres"')
    progress = app.run("deploy").stderr
    assert "backup db-" in progress  # backup first, as on processes
    assert "[release 1] migrated in /app as 10001 with fastapi" in progress
    assert progress.index("backup db-") < progress.index("[release 1] migrated")
    assert "greeting hi" in progress
    log = app.home / "apps" / "hello" / "production" / "logs" / "release-1.log"
    assert "migrated in /app" in log.read_text()
    check_run_and_exec(app, token, release="1")
    app.set_version("v2")
    app.configure(release='command = "sleep 60"\ntimeout = "2s"')
    failed = app.run("deploy", check=False)
    assert failed.returncode == 4
    assert "release command `sleep 60` timed out after 2s: killed; no traffic moved" in \
        failed.stderr
    assert app.version() == "v1"
    assert not podman("ps", "-aq", "--filter", f"label=headway.home={app.home}",
                      "--filter", "label=headway.process=run").split()  # removed, each one


@pytest.mark.integration
def test_node_release_command_needs_the_images_node_modules(app: App,
                                                            base_images: None) -> None:  # noqa: F811
    node = app.dir.parent / "node-hello"
    subprocess.run(["cp", "-r", str(ROOT / "examples" / "node-hello"), str(node)], check=True)
    toml = (node / "headway.toml").read_text().replace("port = 18081", f"port = {app.port}")
    (node / "headway.toml").write_text(
        toml + '\n[processes.web.health]\ninterval = "200ms"\n'
        '\n[build]\nbase_image = "docker.io/library/node:20-slim"\n'  # the stand-in there is
        '\n[release]\ncommand = "node -e \\"require(\'express\'); console.log(\'express \' + '
        'process.env.NODE_ENV)\\""\n'
        f'\n[observe]\nmetrics_port = {app.metrics_port}\n'
        f"router_metrics_port = {app.router_metrics_port}\n")
    node_app = App(node, app.home, app.port)
    try:
        assert "[release 1] express production" in node_app.run("deploy").stderr
        assert node_app.run("run", "--", "node", "-e", "require('express')").returncode == 0
    finally:
        node_app.run("destroy", "--yes", check=False, timeout=60)


def test_node_processes_get_node_env_production_unless_env_sets_it(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text("{}")
    rel = Release("shop", "production", 1, "ready", "", str(tmp_path), "{}", 0.0)
    assert release_env(rel, {})["NODE_ENV"] == "production"
    assert release_env(rel, {"NODE_ENV": "staging"})["NODE_ENV"] == "staging"
    (tmp_path / "package.json").unlink()
    assert "NODE_ENV" not in release_env(rel, {})


def test_a_one_off_command_streams_its_lines_and_is_killed_past_its_timeout() -> None:
    lines: list[str] = []
    code = run_command([sys.executable, "-c", "print('a'); print('b'); raise SystemExit(3)"],
                       env=dict(os.environ), output=lines.append)
    assert (code, lines) == (3, ["a\n", "b\n"])
    marker = Path(tempfile.mkdtemp()) / "still-running"
    started = time.monotonic()
    with pytest.raises(RuntimeFailure, match="timed out after 0.5s: killed"):
        run_command(["sh", "-c", f"sleep 2; touch {marker}"], env=dict(os.environ),
                    timeout=0.5, output=lines.append)
    assert time.monotonic() - started < 2
    time.sleep(2)
    assert not marker.exists()  # its whole process group was killed
