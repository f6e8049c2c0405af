"""Abuse and faults from issue 13, each refused or survived the way a user relies on: bad input
exits 2 naming the file and key (never a traceback, nothing recorded), and the router keeps
serving when an instance hangs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from headway.cli import output
from headway.engine import routing
from headway.errors import RouterError
from headway.observer.metrics import HeadwayCollector
from headway.observer.requests import RequestLog
from headway.router.base import ServerState
from headway.router.fake import FakeRouter
from headway.store import Instance, Store
from tests.conftest import App


def refused(app: App, *args: str, stdin: str | None = None) -> str:
    """Run the CLI, expect exit 2 and no traceback; return stderr."""
    result = subprocess.run([sys.executable, "-m", "headway", *args], cwd=app.dir, env=app.env(),
                            input=stdin, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stderr


def edit(app: App, old: str, new: str) -> None:
    toml = app.dir / "headway.toml"
    assert old in toml.read_text()
    toml.write_text(toml.read_text().replace(old, new))


@pytest.mark.integration
def test_web_with_zero_replicas_is_refused_by_deploy_and_config_check(app: App) -> None:
    edit(app, "replicas = 2", "replicas = 0")
    for command in (("deploy",), ("config", "check")):
        stderr = refused(app, *command)
        assert "headway.toml: processes.web.replicas: 0: the web process needs at least 1" \
            in stderr
    assert not (app.home / "router").exists()


@pytest.mark.integration
@pytest.mark.parametrize("value", ["nan", "inf", '"1e999s"', '"' + "9" * 400 + 's"'])
def test_a_duration_that_never_ends_is_refused(app: App, value: str) -> None:
    app.configure(deploy=f"timeout = {value}")
    assert "headway.toml: deploy.timeout: " in refused(app, "deploy")
    assert not (app.home / "router").exists()


@pytest.mark.integration
def test_a_newline_in_the_health_path_cannot_reach_haproxy(app: App) -> None:
    app.configure(processes__web__health='path = "/up\\nfrontend evil\\n  bind 127.0.0.1:1"')
    stderr = refused(app, "deploy")
    assert "headway.toml: processes.web.health.path: '/up\\nfrontend evil" in stderr
    assert not (app.home / "router").exists()


@pytest.mark.integration
@pytest.mark.parametrize("name", ["../../etc", "a/b", "..", "my app", "café", "Shop", ""])
def test_app_names_that_are_not_names_are_refused(app: App, name: str) -> None:
    stderr = refused(app, "--app", name, "secrets", "set", "TOKEN", stdin="value")
    assert f"--app {name!r}: not an app name" in stderr
    assert not (app.home / "state.db").exists()  # nothing was recorded under that name


@pytest.mark.integration
def test_a_folder_as_config_and_negative_log_lines_are_clear_errors(app: App) -> None:
    stderr = refused(app, "-c", str(app.dir), "status")
    assert f"{app.dir}: is a folder, not a headway.toml" in stderr
    assert f"-c {app.dir / 'headway.toml'}" in stderr
    assert "logs -n -5: a number of lines" in refused(app, "logs", "-n", "-5")


@pytest.mark.integration
def test_an_env_name_close_to_a_declared_one_is_a_typo(app: App) -> None:
    app.configure(env='LOG = "info"\n[env.staging]\nLOG = "debug"')
    stderr = refused(app, "--env", "stagin", "config", "check")
    assert "--env stagin: no [env.stagin] table; did you mean --env staging?" in stderr
    assert "valid for --env qa" in app.run("--env", "qa", "config", "check").stdout


@pytest.mark.integration
def test_config_check_refuses_what_deploy_refuses(app: App) -> None:
    edit(app, 'runtime = "process"', 'runtime = "process"\npath = "no-such-folder"')
    for command in (("config", "check"), ("deploy",)):
        assert "headway.toml: app.path: 'no-such-folder' (" in refused(app, *command)
        assert "does not exist" in refused(app, *command)
    assert not (app.home / "router").exists()


def _routed_app(tmp_path: Path) -> tuple[Store, FakeRouter, list[Instance], list[Instance]]:
    """shop (production): release 1 on 2 instances in rotation, release 2 on 1 (added)."""
    store, router = Store(tmp_path / "home"), FakeRouter()
    store.upsert_app("shop", "production", 80, "127.0.0.1", [], True, "/up", 1.0)

    def inst(n: int, release: int) -> Instance:
        i = Instance(f"web-r{release}-{n}", "shop", "production", release, "web", 20000 + n,
                     ["serve"], "/", {}, "/dev/null", 1.0, "running", "running")
        store.add_instance(i)
        return i

    stable, canary = [inst(1, 1), inst(2, 1)], [inst(3, 2)]
    routing.add(store, router, stable + canary, check_interval=1.0)
    routing.switch(store, router, enable=store.instances("shop", "production", release=1),
                   drain=[])
    return store, router, stable, canary


def test_a_10_percent_canary_shows_10_percent_in_status_and_metrics(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, router, stable, canary = _routed_app(tmp_path)
    routing.split(store, router, canary=canary, stable=stable, share=10)

    class LiveRouter:  # the router's live state, as `status` reads it from HAProxy
        def __init__(self, home: Path) -> None:
            pass

        def running(self) -> bool:
            return True

        def servers(self, backend: str) -> dict[str, ServerState]:
            return router.servers(backend)

    monkeypatch.setattr("headway.router.HAProxy", LiveRouter)
    ctx = output.Context(app_name="shop", _store=store)  # this store: no agent is started
    rows = ctx.status()["instances"]
    by_release: dict[int, float] = {}
    for row in rows:
        by_release[row["release"]] = by_release.get(row["release"], 0) + row["traffic"]
    assert by_release == {1: 90.0, 2: 10.0}
    collector = HeadwayCollector(store.home, RequestLog(tmp_path / "log.sock"))
    family = next(f for f in collector._releases(store) if f.name == "headway_traffic_weight")
    assert {s.labels["release"]: s.value for s in family.samples} == {"1": 0.9, "2": 0.1}


def test_a_switch_that_would_leave_no_server_is_refused_except_by_destroy(
        tmp_path: Path) -> None:
    store, router, _, _ = _routed_app(tmp_path)
    live = store.instances("shop", "production", release=1)
    with pytest.raises(RouterError, match="refusing to drain every server of shop"):
        routing.switch(store, router, enable=[], drain=live)
    assert router.state["be_shop_production"]["web-r1-1"] == "ready"  # nothing was sent
    routing.switch(store, router, enable=[], drain=live[:1])  # one is left: fine
    routing.switch(store, router, enable=[], drain=store.instances("shop", "production",
                                                                   release=1), destroy=True)
    assert {s for s, state in router.state["be_shop_production"].items()
            if state == "ready"} == set()


def _haproxy_pids(app: App) -> list[int]:
    config = str(app.home / "router" / "haproxy.cfg")
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if proc.name.isdigit() and config.encode() in argv:
            pids.append(int(proc.name))
    return pids


@pytest.mark.integration
def test_haproxy_runs_with_a_clean_environment(app: App) -> None:
    token = "env-source-" + "7f3a" * 8
    toml = app.dir / "headway.toml"
    toml.write_text(toml.read_text() + '\n[secrets]\nAPI_TOKEN = "env:HW_TEST_TOKEN"\n')
    env = dict(app.env(), HW_TEST_TOKEN=token, UNRELATED="x")
    subprocess.run([sys.executable, "-m", "headway", "deploy"], cwd=app.dir, env=env,
                   capture_output=True, text=True, timeout=120, check=True)
    pids = _haproxy_pids(app)
    assert len(pids) >= 2  # master and worker
    for pid in pids:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert token.encode() not in environ
        names = {entry.split(b"=")[0].decode() for entry in environ.split(b"\0") if entry}
        ours = {n for n in names if not n.startswith("HAPROXY_")}  # HAProxy sets its own
        assert ours <= {"PATH", "HEADWAY_HOME"}, names


def _web_pids(app: App) -> list[int]:
    status = json.loads(app.run("status", "--json").stdout)
    return [i["pid"] for i in status["instances"] if i["process"] == "web"]


@pytest.mark.integration
def test_requests_on_a_hung_instance_are_not_held(app: App) -> None:
    """SIGSTOP: the kernel still accepts connections, so requests sent to the instance before
    its checks mark it down would wait for the server timeout (60 s); they are cut instead,
    and every later request goes to the other instance."""
    app.run("deploy")
    stopped = _web_pids(app)[0]
    timings: list[tuple[float, float, int]] = []  # (start, seconds, status; 0 = error)

    def client() -> None:
        with httpx.Client(timeout=30) as http:
            end = time.monotonic() + 8
            while time.monotonic() < end:
                t0 = time.monotonic()
                try:
                    code = http.get(app.url).status_code
                except httpx.HTTPError:
                    code = 0
                timings.append((t0, time.monotonic() - t0, code))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1)
    os.kill(stopped, signal.SIGSTOP)
    hung_at = time.monotonic()
    try:
        for t in threads:
            t.join(timeout=40)
    finally:
        os.kill(stopped, signal.SIGCONT)
    slowest = max(seconds for _, seconds, _ in timings)
    assert slowest < 5, f"a request was held {slowest:.1f}s"
    late = [code for start, _, code in timings if start > hung_at + 3]
    assert late and all(code == 200 for code in late), late
    # those cut on the hung instance were retried on the other one (retry-on empty-response)
    assert all(code == 200 for _, _, code in timings), [t for t in timings if t[2] != 200]


@pytest.mark.integration
def test_request_timeout_is_the_longest_wait_for_an_answer(app: App) -> None:
    app.configure(router='address = "127.0.0.1"\nrequest_timeout = "1s"')
    app.run("deploy")
    t0 = time.monotonic()
    answer = httpx.get(app.url + "slow?seconds=25", timeout=30)
    took = time.monotonic() - t0
    assert answer.status_code == 504
    assert took < 10  # HAProxy retries a timed-out request up to 3 times (retry-on)
    assert httpx.get(app.url, timeout=5).status_code == 200


def test_a_server_the_router_still_holds_is_removed_once_it_lets_go(tmp_path: Path) -> None:
    store, router, stable, canary = _routed_app(tmp_path)
    router.busy = {canary[0].id}  # pooled connections: HAProxy refuses `del server`
    routing.remove(store, router, store.instances("shop", "production", release=2))
    assert router.state["be_shop_production"][canary[0].id] == "maint"  # out of rotation
    assert store.get(routing.PENDING) == f'["be_shop_production/{canary[0].id}"]'
    router.busy = set()
    routing.purge(store, router)  # the agent's next round
    assert canary[0].id not in router.state["be_shop_production"]
    assert store.get(routing.PENDING) is None
    assert {s for s, state in router.state["be_shop_production"].items()} == {
        i.id for i in stable}
