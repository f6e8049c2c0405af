"""The engine over fakes: FakeRouter records runtime-API exchanges, FakeRuntime marks instances
running at once, probes always pass. Proves ordering only; tests/test_deploy.py proves traffic."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from headway.engine import Engine
from headway.errors import DeployFailed
from headway.router.fake import FakeRouter
from headway.runtime.process import ProcessRuntime
from headway.spec import parse_spec
from headway.store import Instance, Store

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
'''


class FakeRuntime(ProcessRuntime):
    """Records instances like the process runtime, but 'runs' them at once; `crash` makes a
    release's instances exit before they are healthy."""

    crash: ClassVar[set[int]] = set()

    def prepare(self, source: Path, files: list[Path], release: object) -> None:
        pass

    def start(self, inst: Instance) -> None:
        super().start(inst)
        if inst.release in self.crash:
            self.store.set_instance(inst.id, state="backoff", exit_code=1, restarts=1)
        else:
            self.store.set_instance(inst.id, state="running", pid=1)

    def stop(self, inst_id: str, *, remove: bool = True) -> None:
        self.store.delete_instance(inst_id)


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.setattr("headway.observer.health.probe", lambda *a, **k: None)
    store = Store(tmp_path / "home")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "VERSION").write_text("1")
    FakeRuntime.crash = set()
    return Engine(store, FakeRouter(), FakeRuntime(store))


def deploy(engine: Engine, tmp_path: Path, version: str, strategy: str = "blue-green") -> None:
    (tmp_path / "app" / "VERSION").write_text(version)
    engine.deploy(parse_spec(SPEC.format(strategy=strategy)), tmp_path / "app", "production")


def test_blue_green_moves_all_traffic_in_one_exchange(engine: Engine, tmp_path: Path) -> None:
    router: FakeRouter = engine.router  # type: ignore[assignment]
    deploy(engine, tmp_path, "1")
    old = list(router.state["be_shop_production"])
    router.commands.clear()
    deploy(engine, tmp_path, "2")
    add, switch, park = router.commands[:3]
    assert all(c.startswith("add server be_shop_production/web-r2-") for c in add)
    new = [c.split()[2].split("/")[1] for c in add]
    enable = [c for n in new for c in (
        f"enable health be_shop_production/{n}", f"set weight be_shop_production/{n} 100",
        f"set server be_shop_production/{n} state ready",
        f"set server be_shop_production/{n} health up")]
    assert switch[:len(enable)] == enable
    assert sorted(switch[len(enable):]) == sorted(
        f"set server be_shop_production/{o} state drain" for o in old)
    assert sorted(park) == sorted(f"set server be_shop_production/{o} state maint" for o in old)
    assert router.state["be_shop_production"] == {**{n: "ready" for n in new},
                                                  **{o: "maint" for o in old}}


def test_failed_release_leaves_the_router_as_it_was(engine: Engine, tmp_path: Path) -> None:
    router: FakeRouter = engine.router  # type: ignore[assignment]
    deploy(engine, tmp_path, "1")
    before = dict(router.state["be_shop_production"])
    FakeRuntime.crash = {2}
    with pytest.raises(DeployFailed, match="exited with code 1") as err:
        deploy(engine, tmp_path, "2")
    assert err.value.hint == "traffic stayed on release 1"
    assert router.state["be_shop_production"] == before
    assert [r.status for r in engine.store.releases("shop", "production")] == ["failed", "active"]


def test_rolling_replaces_one_instance_per_exchange(engine: Engine, tmp_path: Path) -> None:
    router: FakeRouter = engine.router  # type: ignore[assignment]
    deploy(engine, tmp_path, "1")
    router.commands.clear()
    deploy(engine, tmp_path, "2", strategy="rolling")
    switches = [c for c in router.commands if any("state drain" in x for x in c)]
    assert len(switches) == 2
    for exchange in switches:
        assert sum("state ready" in c for c in exchange) == 1
        assert sum("state drain" in c for c in exchange) == 1
