"""The engine over fakes: FakeRouter records the router changes of each exchange, FakeRuntime marks instances
running at once, probes always pass. Proves ordering only; tests/test_deploy.py proves traffic.
Also the podman argv, pinned whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from headway.engine import Engine
from headway.engine.recovery import Interrupted, decide
from headway.errors import DeployFailed, NotFound
from headway.planner import Step
from headway.router.base import Add, Drain, Maint, Ready
from headway.router.fake import FakeRouter
from headway.runtime.container import EXPORT_SECRETS, Box, run_argv
from headway.runtime.fake import FakeRuntime
from headway.spec import parse_spec
from headway.spec.models import ProcessSpec
from headway.store import Store

SPEC = '''
[app]
name = "shop"
runtime = "process"
[processes.web]
command = "serve"
replicas = 2
[processes.web.health]
interval = "10ms"
[deploy]
strategy = "{strategy}"
[observe]
metrics_port = 0  # no clash with an agent of another home on this host
'''


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.setattr("headway.observer.health.probe", lambda *a, **k: None)
    store = Store(tmp_path / "home")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "VERSION").write_text("1")
    return Engine(store, FakeRouter(), FakeRuntime(store))


def fake(engine: Engine) -> FakeRuntime:
    runtime: FakeRuntime = engine.runtime  # type: ignore[assignment]
    return runtime


def deploy(engine: Engine, tmp_path: Path, version: str, strategy: str = "blue-green") -> None:
    (tmp_path / "app" / "VERSION").write_text(version)
    engine.deploy(parse_spec(SPEC.format(strategy=strategy)), tmp_path / "app", "production")


def test_blue_green_moves_all_traffic_in_one_exchange(engine: Engine, tmp_path: Path) -> None:
    router: FakeRouter = engine.router  # type: ignore[assignment]
    deploy(engine, tmp_path, "1")
    old = list(router.state["be_shop_production"])
    router.exchanges.clear()
    deploy(engine, tmp_path, "2")
    (be, add), (_, switch), (_, park) = router.exchanges[:3]
    assert be == "be_shop_production"
    assert all(isinstance(c, Add) and c.server.startswith("web-r2-") for c in add)
    new = [c.server for c in add]
    assert switch[:len(new)] == [Ready(n, 100) for n in new]
    assert sorted(switch[len(new):], key=str) == sorted((Drain(o) for o in old), key=str)
    assert sorted(park, key=str) == sorted((Maint(o) for o in old), key=str)
    assert router.state["be_shop_production"] == {**{n: "ready" for n in new},
                                                  **{o: "maint" for o in old}}


def test_failed_release_leaves_the_router_as_it_was(engine: Engine, tmp_path: Path) -> None:
    router: FakeRouter = engine.router  # type: ignore[assignment]
    deploy(engine, tmp_path, "1")
    before = dict(router.state["be_shop_production"])
    fake(engine).crash = {2}
    with pytest.raises(DeployFailed, match="exited with code 1") as err:
        deploy(engine, tmp_path, "2")
    assert err.value.hint == "traffic stayed on release 1"
    assert router.state["be_shop_production"] == before
    assert [r.status for r in engine.store.releases("shop", "production")] == ["failed", "active"]


def test_rolling_replaces_one_instance_per_exchange(engine: Engine, tmp_path: Path) -> None:
    router: FakeRouter = engine.router  # type: ignore[assignment]
    deploy(engine, tmp_path, "1")
    router.exchanges.clear()
    deploy(engine, tmp_path, "2", strategy="rolling")
    switches = [c for _, c in router.exchanges if any(isinstance(x, Drain) for x in c)]
    assert len(switches) == 2
    for exchange in switches:
        assert sum(isinstance(c, Ready) for c in exchange) == 1
        assert sum(isinstance(c, Drain) for c in exchange) == 1


def test_release_command_runs_once_in_the_release_runtime_and_streams(
        engine: Engine, tmp_path: Path) -> None:
    said: list[str] = []
    engine.progress = lambda message, **fields: said.append(message)
    fake(engine).lines = ["migrating\n", "done\n"]
    (tmp_path / "app" / "VERSION").write_text("1")
    spec = parse_spec(SPEC.format(strategy="blue-green")
                      + '[release]\ncommand = "migrate --to $HEADWAY_RELEASE"\ntimeout = "5s"\n'
                      + '[env]\nMODE = "x"\n')
    engine.deploy(spec, tmp_path / "app", "production")
    (once,) = fake(engine).ran
    assert (once.release, once.argv, once.timeout, once.tty) == (1, ["migrate", "--to", "1"],
                                                                 5.0, False)
    assert once.env == {"MODE": "x"}
    assert "[release 1] migrating" in said and "[release 1] done" in said
    log = engine.store.home / "apps" / "shop" / "production" / "logs" / "release-1.log"
    assert log.read_text() == "migrating\ndone\n"
    fake(engine).exit_code = 3
    (tmp_path / "app" / "VERSION").write_text("2")
    with pytest.raises(DeployFailed, match="`migrate --to \\$HEADWAY_RELEASE` exited 3"):
        engine.deploy(spec, tmp_path / "app", "production")
    assert [r.status for r in engine.store.releases("shop", "production")] == ["failed", "active"]
    assert {i.release for i in engine.store.instances("shop", "production")} == {1}


def test_run_and_exec_use_the_live_release_and_refuse_one_not_built(
        engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no live release"):
        engine.run("shop", "production", ["true"])
    deploy(engine, tmp_path, "1")
    fake(engine).exit_code = 5
    assert engine.run("shop", "production", ["sh"], tty=True) == 5
    inst = engine.store.instances("shop", "production")[0]
    assert engine.exec("shop", "production", ["ls"], instance=inst.id) == 5
    first, second = fake(engine).ran
    assert (first.release, first.argv, first.tty, first.instance) == (1, ["sh"], True, None)
    assert (second.argv, second.instance) == (["ls"], inst.id)
    with pytest.raises(NotFound, match="no release 9"):
        engine.run("shop", "production", ["true"], release=9)
    engine.store.set_release("shop", "production", 1, status="pruned")
    with pytest.raises(NotFound, match="release 1 of shop \\(production\\) is not built"):
        engine.run("shop", "production", ["true"], release=1)
    with pytest.raises(NotFound, match="no running instance web-x"):
        engine.exec("shop", "production", ["ls"], instance="web-x")


def test_a_step_of_unknown_kind_is_refused_before_anything_runs(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    router: FakeRouter = engine.router  # type: ignore[assignment]
    deploy(engine, tmp_path, "1")
    before = dict(router.state["be_shop_production"])
    monkeypatch.setattr("headway.planner.plan_deploy", lambda spec, running: [
        Step("start", group="web", process="web", count=2), Step("teleport")])
    with pytest.raises(DeployFailed, match="internal error: the plan has a step of unknown "
                       "kind 'teleport'") as err:
        deploy(engine, tmp_path, "2")
    assert "a bug in Headway" in err.value.message
    assert err.value.hint == "traffic stayed on release 1"
    assert router.state["be_shop_production"] == before
    assert {i.release for i in engine.store.instances("shop", "production")} == {1}
    assert [r.status for r in engine.store.releases("shop", "production")] == ["failed", "active"]


# recovery.decide: (what the journal recorded, what the live router serves) -> finish or undo
RECOVERY = [
    # kind, new, previous, serving, new_status -> action, fail_new
    ("deploy", 2, 1, {2}, "ready", "finish", False),        # killed after the switch
    ("deploy", 2, 1, {1}, "ready", "undo", True),           # killed before the switch
    ("deploy", 2, 1, {1, 2}, "ready", "undo", True),        # killed inside a canary
    ("deploy", 2, 1, set(), "ready", "undo", True),         # nothing in rotation: the good one
    ("deploy", 2, None, {2}, "ready", "finish", False),     # a first deploy that switched
    ("deploy", 2, None, set(), "building", "discard", True),  # a first deploy that did not
    ("deploy", None, 1, {1}, "", "undo", False),            # the new release's record is gone
    ("deploy", None, None, set(), "", "forget", False),
    ("rollback", 1, 2, {1}, "previous", "finish", False),  # rolled back, then killed
    ("rollback", 1, 2, {2}, "previous", "undo", False),    # a rollback target is not failed
    ("fallback", 1, 2, {1, 2}, "previous", "undo", False),
    ("deploy", 2, 1, {1}, "active", "undo", False),         # already live: never failed
]


@pytest.mark.parametrize(("kind", "new", "previous", "serving", "status", "action", "fail"),
                         RECOVERY)
def test_recovery_decides_from_journal_and_router(kind: str, new: int | None,
                                                  previous: int | None, serving: set[int],
                                                  status: str, action: str, fail: bool) -> None:
    decision = decide(Interrupted(kind=kind, new=new, previous=previous,
                                  serving=frozenset(serving), new_status=status))
    assert (decision.action, decision.fail_new) == (action, fail)
    assert decision.reason


def test_recover_carries_out_the_decision(engine: Engine, tmp_path: Path) -> None:
    """A deploy killed before its switch (release 2 started, not routed) is undone."""
    deploy(engine, tmp_path, "1")
    spec = parse_spec(SPEC.format(strategy="blue-green"))
    store = engine.store
    rel = store.add_release("shop", "production", digest="x", root=tmp_path / "r",
                            spec=store.releases("shop", "production")[0].spec)
    dead = store.begin_deploy("shop", "production", release=rel.number, previous=1,
                              kind="deploy", strategy="blue-green")
    store.db.execute("UPDATE deploys SET pid=?, pid_start=0 WHERE id=?", (2**22 + 1, dead))
    fake(engine).start(rel, "web", spec.processes["web"], {})
    said: list[str] = []
    engine.progress = lambda message, **fields: said.append(message)
    engine.recover("shop", "production")
    assert any("undoing it (release 2 is not in rotation: back to release 1)" in m
               for m in said), said
    assert {i.release for i in store.instances("shop", "production")} == {1}
    assert [r.status for r in store.releases("shop", "production")] == ["failed", "active"]


def test_warm_rollback_switches_first_in_one_exchange(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """All of release 1 is warm and answers: the rollback's first router exchange is the switch,
    before any import, probe loop or warning that can wait."""
    router: FakeRouter = engine.router  # type: ignore[assignment]
    monkeypatch.setattr("headway.engine.warm.probe", lambda *a, **k: None)
    deploy(engine, tmp_path, "1")
    deploy(engine, tmp_path, "2")
    by_release = {r: [i.id for i in engine.store.instances("shop", "production", release=r)]
                  for r in (1, 2)}
    router.exchanges.clear()
    outcome = engine.rollback("shop", "production")
    (be, first), *_ = router.exchanges
    assert be == "be_shop_production"
    assert sorted(first, key=str) == sorted([*(Ready(i) for i in by_release[1]),
                                             *(Drain(i) for i in by_release[2])], key=str)
    assert outcome.release == 1 and outcome.switch_seconds is not None
    assert router.state["be_shop_production"] == {**dict.fromkeys(by_release[1], "ready"),
                                                  **dict.fromkeys(by_release[2], "maint")}


def test_a_warm_release_that_fails_its_probe_takes_the_careful_path(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("headway.engine.warm.probe", lambda *a, **k: "ConnectionRefusedError")
    deploy(engine, tmp_path, "1")
    deploy(engine, tmp_path, "2")
    outcome = engine.rollback("shop", "production")  # wait_healthy (faked healthy) decides
    assert outcome.release == 1 and outcome.switch_seconds is None
    assert engine.active("shop", "production").number == 1  # type: ignore[union-attr]


def test_probe_answers_like_the_health_rule() -> None:
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from headway.engine.probe import probe

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response({"/up": 200, "/moved": 302, "/gone": 404}.get(self.path, 503))
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        assert probe(port, "/up", timeout=2) is None
        assert probe(port, "/moved", timeout=2) is None
        assert probe(port, "/gone", timeout=2) == "GET /gone answered 404"
        assert probe(port, "/gone", timeout=2, expect="below-500") is None
        assert probe(port, "/x", timeout=2, expect="below-500") == "GET /x answered 503"
    finally:
        server.shutdown()
        server.server_close()
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        closed = free.getsockname()[1]
    assert (probe(closed, "/up", timeout=2) or "").startswith("ConnectionRefusedError")


def test_a_rollback_imports_nothing_heavy_before_its_switch() -> None:
    """What `headway rollback` loads before the switch: no pydantic models, httpx, rich
    (the CLI's printer), http.client, accessories or runtimes: each costs a CLI under load."""
    import subprocess
    import sys

    code = ("import sys, headway.cli.main, headway.engine, headway.router\n"
            "from headway.engine import warm\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in {'pydantic', 'httpx',"
            " 'rich', 'http'}"
            " or m.startswith(('headway.spec', 'headway.accessories', 'headway.runtime',"
            " 'headway.observer.health', 'headway.cli.data', 'headway.cli.ci'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "[]"


def test_rollback_reads_the_app_name_only_but_still_says_did_you_mean(tmp_path: Path) -> None:
    """`headway rollback` skips the spec models before its switch; when it finds nothing to roll
    back, a typo in --env is still named, as every other command names it."""
    import os
    import subprocess
    import sys

    (tmp_path / "headway.toml").write_text(SPEC.format(strategy="blue-green")
                                           + "[env.staging]\n")
    env = dict(os.environ, HEADWAY_HOME=str(tmp_path / "home"))

    def rollback(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "headway", *args, "rollback"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
                              check=False)

    typo = rollback("--env", "stagin")
    assert typo.returncode == 2 and "did you mean --env staging?" in typo.stderr
    nothing = rollback("--env", "staging")
    assert nothing.returncode == 7
    assert "shop (staging) has no earlier good release to roll back to" in nothing.stderr
    bad = rollback("--app", "../etc")
    assert bad.returncode == 2 and "not an app name" in bad.stderr


def test_recorded_settings_are_read_without_the_models_and_fall_back_to_them() -> None:
    """A release record older than a setting (no such key in its JSON) gets the model's
    default, as the models would give it."""
    import json
    from types import SimpleNamespace
    from typing import cast

    from headway.engine.engine import recorded
    from headway.store import Release

    spec = parse_spec(SPEC.format(strategy="blue-green") + '[deploy.canary]\npause = "3s"\n')
    full = spec.model_dump(mode="json")
    old = json.loads(json.dumps(full))
    del old["deploy"]["keep_releases"], old["processes"]["web"]["health"]["interval"]
    for data, interval in ((full, 0.01), (old, 1.0)):  # 1.0: the model's default
        release = cast(Release, SimpleNamespace(spec=json.dumps({"spec": data, "env": {}})))
        assert recorded(release, "deploy", "keep_releases") == 10
        assert recorded(release, "processes", "web", "health", "interval") == interval
        assert recorded(release, "deploy", "canary", "pause") == 3


def test_podman_argv_of_an_instance_and_of_a_one_off_command() -> None:
    labels = {"headway.home": "/h", "headway.app": "shop", "headway.env": "production",
              "headway.release": "3", "headway.process": "web"}
    box = Box(name="web-r3-abc", labels=labels, image="f" * 64, command=["serve", "8080"],
              env={"PORT": "8080", "HOST": "0.0.0.0"}, secrets={"API": "headway-shop-x"},
              mounts={"/h/apps/shop/production/volumes/up": "/app/uploads"}, publish=21000,
              spec=ProcessSpec(command="serve", memory="256m", cpus=0.5, read_only=True))
    assert run_argv("/usr/bin/podman", box) == [
        "/usr/bin/podman", "run", "--rm", "--replace", "--name", "web-r3-abc", "--init",
        "--label", "headway.home=/h", "--label", "headway.app=shop",
        "--label", "headway.env=production", "--label", "headway.release=3",
        "--label", "headway.process=web",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--stop-timeout", "10",
        "-p", "127.0.0.1:21000:8080", "--memory", "256m", "--cpus", "0.5",
        "--read-only", "--tmpfs", "/run/secrets",
        "-v", "/h/apps/shop/production/volumes/up:/app/uploads:U",
        "-e", "HOST=0.0.0.0", "-e", "PORT=8080",
        "--secret", "headway-shop-x,target=headway-API", "--entrypoint", EXPORT_SECRETS,
        "f" * 64, "serve", "8080"]
    once = Box(name="headway-shop-production-run-1", labels=labels | {"headway.process": "run"},
               image="f" * 64, command=["python", "manage.py", "migrate"], env={"A": "1"},
               host_network=True, interactive=True, tty=True)
    assert run_argv("podman", once) == [
        "podman", "run", "--rm", "--name", "headway-shop-production-run-1", "--init", "-i",
        "-t", "--label", "headway.home=/h", "--label", "headway.app=shop",
        "--label", "headway.env=production", "--label", "headway.release=3",
        "--label", "headway.process=run",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--network", "host",
        "-e", "A=1", "f" * 64, "python", "manage.py", "migrate"]
