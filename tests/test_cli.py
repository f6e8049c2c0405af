"""The CLI's user paths beyond deploy/rollback: bad input, several apps on one router,
workers and environments, init, dry run, logs, keep_previous expiry. Real HAProxy and
processes wherever something runs."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import EXAMPLE, App, free_port, wait_for

pytestmark = pytest.mark.integration  # the CLI as a subprocess, HAProxy, processes


def test_unknown_key_is_refused_naming_the_file_and_key(app: App) -> None:
    app.configure(deploy='stratgy = "rolling"')
    result = app.run("deploy", check=False)
    assert result.returncode == 2
    assert 'headway.toml: deploy.stratgy: unknown key; did you mean "strategy"?' in result.stderr
    assert not (app.home / "state.db").exists()  # refused before anything was recorded


def test_router_port_held_by_another_program_is_a_clear_error(app: App) -> None:
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", app.port))
        holder.listen()
        result = app.run("deploy", check=False)
    assert result.returncode == 5
    assert f"router port 127.0.0.1:{app.port} is in use" in result.stderr
    assert "change [router] port" in result.stderr
    assert app.run("releases", "--json").stdout.strip() == "[]"


def test_missing_haproxy_binary_names_the_fix(app: App) -> None:
    env = dict(app.env(), HEADWAY_HAPROXY="haproxy-not-here")
    result = subprocess.run([sys.executable, "-m", "headway", "deploy"], cwd=app.dir, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 5
    assert "HAProxy is not installed (no `haproxy-not-here` on PATH)" in result.stderr
    assert "apt-get install -y haproxy" in result.stderr
    assert app.run("releases", "--json").stdout.strip() == "[]"  # no release half-made


def test_unsupported_runtime_is_refused_before_anything_runs(app: App) -> None:
    toml = app.dir / "headway.toml"
    toml.write_text(toml.read_text().replace('runtime = "process"', 'runtime = "kubernetes"'))
    result = subprocess.run([sys.executable, "-m", "headway", "deploy"], cwd=app.dir,
                            env=dict(app.env(), KUBECONFIG=str(app.home / "no-kubeconfig")),
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2 and "no kubeconfig: KUBECONFIG=" in result.stderr
    toml.write_text(toml.read_text().replace('runtime = "kubernetes"', 'runtime = "docker"'))
    result = subprocess.run([sys.executable, "-m", "headway", "deploy"], cwd=app.dir,
                            env=dict(app.env(), DOCKER_HOST=f"unix://{app.home}/no.sock"),
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 6 and "Docker daemon does not answer at unix://" in result.stderr
    assert not (app.home / "router").exists()
    assert app.run("releases", "--json").stdout.strip() == "[]"


def test_two_apps_share_one_router_by_host_header(app: App, tmp_path: Path) -> None:
    app.configure(router='hosts = ["hello.test"]\ndefault = true')
    app.run("deploy")
    other = tmp_path / "other"
    shutil.copytree(app.dir, other, ignore=shutil.ignore_patterns("BROKEN"))
    toml = other / "headway.toml"
    text = toml.read_text().replace('name = "hello"', 'name = "other"')
    text = text.replace('hosts = ["hello.test"]\ndefault = true', 'hosts = ["other.test"]')
    toml.write_text(text)
    (other / "VERSION").write_text("other-v1\n")
    second = App(other, app.home, app.port)
    def version(host: str) -> str:
        return str(httpx.get(app.url, headers={"Host": host}, timeout=5).json()["version"])

    try:
        second.run("deploy")
        assert version("other.test") == "other-v1"
        assert version("hello.test") == "v1"
        assert version("unknown.test") == "v1"  # the default app
    finally:
        second.run("destroy", "--yes", check=False)
    assert app.version() == "v1"  # destroying one app leaves the other served


def test_workers_and_environment_overrides(app: App) -> None:
    (app.dir / "worker.py").write_text(
        "import os, time\n"
        "print('worker', os.environ['GREETING'], os.environ['HEADWAY_RELEASE'], flush=True)\n"
        "time.sleep(3600)\n")
    app.configure(processes__worker='command = "python3 worker.py"\nreplicas = 1',
                  processes__worker__health='path = ""\ninterval = "200ms"',
                  env='GREETING = "hello"\n[env.staging]\nGREETING = "hi from staging"')
    app.run("--env", "staging", "deploy")
    insts = json.loads(app.run("--env", "staging", "status", "--json").stdout)["instances"]
    assert sorted(i["process"] for i in insts) == ["web", "web", "worker"]
    logs = app.run("--env", "staging", "logs", "--process", "worker").stdout
    assert "worker hi from staging 1" in logs
    lines = app.run("--env", "staging", "logs", "--json").stdout.splitlines()
    assert {"instance", "process", "release", "line"} == set(json.loads(lines[0]))
    assert app.run("status", check=False).returncode == 7  # production has nothing deployed
    app.run("--env", "staging", "destroy", "--yes")


def test_dry_run_prints_the_plan_and_changes_nothing(app: App) -> None:
    app.run("deploy")
    app.set_version("v2")
    plan = app.run("deploy", "--dry-run").stdout
    assert "route traffic to web; drain web-r1-" in plan
    assert "kept warm for rollback" in plan
    assert [r["number"] for r in json.loads(app.run("releases", "--json").stdout)] == [1]
    assert app.version() == "v1"


def test_previous_release_is_stopped_when_keep_previous_runs_out(app: App) -> None:
    app.configure(deploy='keep_previous = "1s"')
    app.run("deploy")
    app.set_version("v2")
    app.run("deploy")
    deadline = time.monotonic() + 15
    while True:
        releases = {r["number"]: r["status"] for r in
                    json.loads(app.run("releases", "--json").stdout)}
        if releases[1] == "retired":
            break
        assert time.monotonic() < deadline, releases
        time.sleep(0.3)
    def releases_running() -> set[int]:
        return {i["release"] for i in json.loads(app.run("status", "--json").stdout)["instances"]}

    while releases_running() != {2}:  # release 1's instances stop (SIGTERM, then gone)
        assert time.monotonic() < deadline + 10, releases_running()
        time.sleep(0.3)
    app.run("rollback")  # cold: restarts release 1, never rebuilds
    assert app.version() == "v1"


def test_init_detects_a_fastapi_app_and_writes_a_deployable_file(tmp_path: Path) -> None:
    folder = tmp_path / "api"
    folder.mkdir()
    (folder / "main.py").write_text("from fastapi import FastAPI\napp = FastAPI()\n")
    (folder / "requirements.txt").write_text("fastapi\nuvicorn\n")
    result = subprocess.run([sys.executable, "-m", "headway", "init", "--path", str(folder)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    text = (folder / "headway.toml").read_text()
    assert 'command = "uvicorn main:app --host $HOST --port $PORT"' in text
    from headway.spec import load_spec

    assert load_spec(folder / "headway.toml").app.name == "api"
    again = subprocess.run([sys.executable, "-m", "headway", "init", "--path", str(folder)],
                           capture_output=True, text=True, check=False)
    assert again.returncode == 2 and "--force" in again.stderr
    subprocess.run([sys.executable, "-m", "headway", "init", "--path", str(folder), "--force",
                    "--containerfile"], capture_output=True, text=True, check=True)
    containerfile = (folder / "Containerfile").read_text()
    assert 'CMD ["uvicorn", "main:app", "--host", "0.0.0.0", "--port", "8080"]' in containerfile
    assert "USER 10001" in containerfile and ".env" in (folder / ".containerignore").read_text()


def test_init_on_the_bundled_example_keeps_its_own_entrypoint(tmp_path: Path) -> None:
    folder = tmp_path / "hello"
    shutil.copytree(EXAMPLE, folder)
    (folder / "headway.toml").unlink()
    subprocess.run([sys.executable, "-m", "headway", "init", "--path", str(folder), "--port",
                    str(free_port())], check=True, capture_output=True)
    assert 'command = "python3 app.py"' in (folder / "headway.toml").read_text()


def test_json_logs_carry_app_release_and_step(app: App) -> None:
    result = app.run("--log-format", "json", "deploy")
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    steps = {line.get("step") for line in lines}
    assert {"build", "start", "wait_healthy", "switch"} <= steps
    assert all(line["app"] == "hello" and line["release"] == 1 for line in lines if "step" in line)
    agent = (app.home / "agent.log").read_text().splitlines()
    assert json.loads(agent[0])["source"] == "agent"  # the agent it started logs JSON too
    bad = app.run("--env", "Prod_1", "status", check=False)
    assert bad.returncode == 2 and "--env 'Prod_1'" in bad.stderr


def test_old_release_folders_are_pruned_and_say_so(app: App) -> None:
    app.configure(deploy="keep_releases = 2")
    for n in range(1, 5):
        app.set_version(f"v{n}")
        app.run("deploy")

    def statuses() -> dict[int, str]:
        return {r["number"]: r["status"]
                for r in json.loads(app.run("releases", "--json").stdout)}

    # release 2 is pruned once its instances, stopped by deploy 4, are gone (by the agent)
    wait_for(lambda: statuses() == {4: "active", 3: "previous", 2: "pruned", 1: "pruned"},
             "releases 1 and 2 to be pruned")
    folders = sorted(p.name for p in (app.home / "apps/hello/production/releases").iterdir())
    assert folders == ["3", "4"]
    refused = app.run("rollback", "1", check=False)
    assert refused.returncode == 7 and "its files were deleted" in refused.stderr
    app.run("rollback")  # the warm previous release is still there
    assert app.version() == "v3"


@pytest.mark.integration  # runs the CLI
def test_with_json_an_error_is_a_json_object_on_stdout(tmp_path: Path) -> None:
    (tmp_path / "headway.toml").write_text('[app]\nname = "x"\nruntim = "process"\n')
    env = {"HEADWAY_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "headway", "status", "--json"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    error = json.loads(done.stdout)
    assert error["exit_code"] == 2 and 'did you mean "runtime"' in error["error"]
    usage = subprocess.run([sys.executable, "-m", "headway", "status", "--json", "--bogus"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert usage.returncode == 2 and "--bogus" in json.loads(usage.stdout)["error"]


def _fake_instances(home: Path) -> None:
    """Two releases' instances of app `shop` whose logs mix agent stamps and app lines."""
    from headway.store import Store
    from headway.store.db import Instance

    store = Store(home)
    old = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 7200))
    new = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 60))
    logs = {1: f"--- headway {old} shop-1-web-1: started\nold GET /\nold ERROR boom\n",
            2: f"before any stamp\n--- headway {old} shop-2-web-1: started\nstale GET /\n"
               f"--- headway {new} shop-2-web-1: restarted\nfresh GET /\nfresh ERROR db\n"}
    for release, text in logs.items():
        log = home / "logs" / f"shop-{release}-web-1.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(text)
        store.add_instance(Instance(
            id=f"shop-{release}-web-1", app="shop", env="production", release=release,
            process="web", port=9000 + release, argv=["true"], cwd=str(home), env_vars={},
            log=str(log), stop_timeout=1.0, desired="stopped", state="stopped"))


def test_logs_since_grep_and_release_filter_lines(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from headway.cli.main import cli

    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    _fake_instances(tmp_path / "home")
    runner = CliRunner()

    def logs(*args: str) -> tuple[int, str]:
        result = runner.invoke(cli, ["--app", "shop", "logs", *args])
        return result.exit_code, result.output

    code, text = logs("--release", "2", "--since", "10m")
    assert code == 0
    # unstamped lines take the last stamp before them; the one before any stamp, the mtime
    assert "fresh GET /" in text and "fresh ERROR db" in text and "before any stamp" in text
    assert "stale GET" not in text and "shop-1-web-1" not in text
    code, text = logs("--grep", "ERR(OR)? ")
    assert code == 0 and "old ERROR boom" in text and "fresh ERROR db" in text
    assert "GET" not in text
    code, text = logs("--since", "3h", "--release", "1", "-n", "1")
    assert code == 0 and text.strip() == "shop-1-web-1 | old ERROR boom"
    env = {"HEADWAY_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    for args, code, words in ((["--grep", "(unclosed"], 2,
                               "--grep '(unclosed': not a regular expression"),
                              (["--since", "yesterday-ish"], 2, "--since 'yesterday-ish'"),
                              (["--release", "7"], 7, "in release 7")):
        done = subprocess.run([sys.executable, "-m", "headway", "--app", "shop", "logs", *args],
                              cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
        assert done.returncode == code and words in done.stderr
        assert "Traceback" not in done.stderr


def test_dry_run_lists_build_runtime_accessories_and_backup(app: App) -> None:
    app.configure(release='command = "python3 -c pass"',
                  accessories__db='type = "postgres"', registry='server = "127.0.0.1:5999"')
    plan = app.run("deploy", "--dry-run").stdout
    assert "create accessory db (postgres, its URL in DATABASE_URL)" in plan
    assert "build: a release folder of the app's files" in plan
    assert '(runtime = "process")' in plan
    assert "back up db (a restore point), then run the release command" in plan
    assert "push:" not in plan  # processes build no image
    app.configure(app='runtime = "auto"')
    plan = app.run("deploy", "--dry-run").stdout
    if 'runtime = "auto" chose podman: it answers `podman info`' in plan:
        assert "build: image 127.0.0.1:5999/hello with podman, python" in plan
        assert "push: 127.0.0.1:5999/hello to 127.0.0.1:5999" in plan
    else:
        assert 'runtime = "auto" chose process: podman is missing' in plan
    assert not (app.home / "accessories").exists()  # nothing was created
    assert app.run("releases", "--json").stdout.strip() == "[]"


def test_shell_completion_as_the_readme_documents_it(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert 'eval "$(_HEADWAY_COMPLETE=bash_source headway)"' in readme
    env = {"HEADWAY_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}

    def complete(words: str, cword: int) -> str:
        return subprocess.run([str(Path(sys.executable).parent / "headway")], cwd=tmp_path,
                              check=True,
                              env={**env, "_HEADWAY_COMPLETE": "bash_complete",
                                   "COMP_WORDS": words, "COMP_CWORD": str(cword)},
                              capture_output=True, text=True).stdout

    assert "plain,logs" in complete("headway lo", 1).split()
    assert "plain,--since" in complete("headway logs --si", 2).split()


def test_build_output_streams_as_plain_lines_with_its_step(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from headway.cli import output

    (tmp_path / "build-1.log").write_text("STEP 1/2: FROM old\n")
    os.utime(tmp_path / "build-1.log", (time.time() - 60, time.time() - 60))  # an earlier build
    log = tmp_path / "build-2.log"
    with output.build_progress(tmp_path, app="shop", env="production"), open(log, "w") as f:
        f.write("STEP 1/2: FROM python:3.11-slim\nSTEP 2/2: RUN pip install -r req")
        f.flush()
        time.sleep(0.6)  # printed: the first line; the second is not finished
        seen = capsys.readouterr().err
        f.write("uirements.txt\nCollecting fastapi\n--> 94b5d920814\n"
                "[2/2] STEP 1/3: FROM python:3.11-slim\n--> Using cache 8135815d27c2\n")
    printed = seen + capsys.readouterr().err
    assert "build STEP 1/2: FROM python:3.11-slim" in printed
    assert "STEP 2/2" not in seen
    assert "build STEP 2/2: RUN pip install -r requirements.txt" in printed
    assert "build STEP 2/2 | Collecting fastapi" in printed
    assert "build [2/2] STEP 1/3 | --> Using cache 8135815d27c2" in printed  # multi-stage
    assert "94b5d920814" not in printed and "FROM old" not in printed
