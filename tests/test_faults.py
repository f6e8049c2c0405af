"""Faults a host really has, under a little load where it matters: a store that is locked,
full or corrupted; a build killed midway; an instance that hangs; a live release that goes
bad after the switch; two HEADWAY_HOMEs on one host; a reboot; secrets in the shell that
starts the agent. Real HAProxy and processes, except the unit tests at the top."""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from headway.agent.control import agent_environment, agent_running
from headway.errors import ConfigError, StoreError
from headway.store import Store, ports, snapshots
from tests.conftest import App, agent_pid, wait_for
from tests.load import Load

HOLD_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("ROLLBACK")
"""


def hold_write_lock(db: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process holding the store's write lock (BEGIN IMMEDIATE) for `seconds`."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(db), str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def releases(app: App) -> dict[int, dict]:
    return {r["number"]: r for r in json.loads(app.run("releases", "--json").stdout)}


def status(app: App) -> dict:
    return json.loads(app.run("status", "--json").stdout)


# the store, unit ---------------------------------------------------------------------------
def test_a_locked_store_is_a_store_error_naming_the_file_after_a_bounded_wait(
        tmp_path: Path) -> None:
    store = Store(tmp_path, timeout=0.5)
    holder = hold_write_lock(store.path, 5)
    try:
        started = time.monotonic()
        with pytest.raises(StoreError) as err:
            store.put("x", "1")
        assert time.monotonic() - started < 3
    finally:
        holder.kill()
    assert err.value.exit_code == 3
    assert str(store.path) in err.value.message and "locked" in err.value.message
    assert isinstance(err.value.__cause__, sqlite3.OperationalError)
    store.put("x", "1")  # the lock gone, the store works again


def test_a_corrupted_store_is_a_store_error_pointing_at_doctor(tmp_path: Path) -> None:
    Store(tmp_path).put("x", "1")
    (tmp_path / "state.db").write_bytes(b"this is not SQLite" * 512)
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"state.db{suffix}").unlink(missing_ok=True)
    with pytest.raises(StoreError) as err:
        Store(tmp_path)
    assert "corrupted" in err.value.message and str(tmp_path / "state.db") in err.value.message
    assert "headway doctor" in (err.value.hint or "")


def test_a_full_disk_is_a_store_error(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.db.execute("PRAGMA max_page_count = 1")  # what SQLite says when the disk is full
    with pytest.raises(StoreError) as err:
        store.put("x", "y" * 100_000)
    assert "the disk is full" in err.value.message and str(store.path) in err.value.message


def test_copies_of_the_store_are_consistent_and_pruned(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.put("k", "v")
    for _ in range(snapshots.KEEP["deploy"] + 2):
        store.snapshot("deploy")
    copies = snapshots.listing(tmp_path)
    assert len(copies) == snapshots.KEEP["deploy"]
    with sqlite3.connect(copies[0]) as db:
        assert db.execute("SELECT value FROM kv WHERE key='k'").fetchone() == ("v",)
    assert oct(copies[0].stat().st_mode)[-3:] == "600"


def test_a_release_whose_builder_died_is_failed_and_its_leftovers_removed(
        tmp_path: Path) -> None:
    store = Store(tmp_path)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    rel = store.add_release("a", "production", digest="d", root=tmp_path / "releases", spec="{}")
    store.db.execute("UPDATE releases SET builder_pid=?, builder_start=NULL", (child.pid,))
    venvs = tmp_path / "venvs"
    (venvs / f"abc.tmp{child.pid}" / "bin").mkdir(parents=True)
    (venvs / "def").mkdir()
    Path(rel.path + ".tmp").mkdir(parents=True)
    assert store.fail_dead_builds("a", "production") == []  # its builder is alive
    child.kill()
    child.wait()
    assert store.interrupted_deploys("a", "production") == []
    failed = store.release("a", "production", rel.number)
    assert failed is not None and failed.status == "failed"
    assert f"pid {child.pid}" in (failed.failure or "")
    assert not (venvs / f"abc.tmp{child.pid}").exists() and (venvs / "def").exists()
    assert not Path(rel.path + ".tmp").exists()


# ports, unit --------------------------------------------------------------------------------
def _allocate_many(home: str, n: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    got = [ports.allocate(Path(home), set(), range(23000, 23200)) for _ in range(n)]
    out.put((home, got))


def test_two_homes_never_get_the_same_port_even_before_binding(tmp_path: Path,
                                                                monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HEADWAY_PORTS_DIR", str(tmp_path / "registry"))
    homes = [tmp_path / "one", tmp_path / "two"]
    for home in homes:
        Store(home)
    queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    # each process allocates without ever binding, as a deploy does before its instance starts
    procs = [multiprocessing.Process(target=_allocate_many, args=(str(h), 1, queue))
             for h in homes for _ in range(10)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    results = [queue.get(timeout=5) for _ in procs]
    by_home = {str(h): set() for h in homes}  # type: ignore[var-annotated]
    for home, got in results:
        by_home[home] |= set(got)
    assert not by_home[str(homes[0])] & by_home[str(homes[1])]
    # a home reuses the ports it owns once its instances let go of them
    assert ports.allocate(homes[0], set(), range(23000, 23200)) in by_home[str(homes[0])]


def test_a_metrics_port_another_homes_agent_serves_is_refused(tmp_path: Path,
                                                             monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HEADWAY_PORTS_DIR", str(tmp_path / "registry"))
    other, mine = tmp_path / "other", tmp_path / "mine"
    Store(other)
    Store(mine)
    assert ports.claim_service(other, 9999) is None
    ports.check_service_ports(mine, {"observe.metrics_port": 9999})  # its agent is not running
    with open(other / "agent.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # now it is
        with pytest.raises(ConfigError) as err:
            ports.check_service_ports(mine, {"observe.metrics_port": 9999})
        assert str(other) in err.value.message and "observe.metrics_port = 9999" in err.value.message
        assert ports.claim_service(mine, 9999) == str(other)


@pytest.mark.parametrize(("mine", "theirs", "refused"), [
    ({"hosts": [], "default": False}, {"hosts": [], "is_default": 0}, True),
    ({"hosts": ["a.test"], "default": False}, {"hosts": ["A.test"], "is_default": 0}, True),
    ({"hosts": ["a.test"], "default": True}, {"hosts": ["b.test"], "is_default": 1}, True),
    ({"hosts": ["a.test"], "default": False}, {"hosts": ["b.test"], "is_default": 0}, False),
    ({"hosts": ["a.test"], "default": False}, {"hosts": [], "is_default": 1}, False),
])
def test_two_environments_on_one_router_port_need_distinct_hosts(
        mine: dict, theirs: dict, refused: bool) -> None:
    apps = [{"app": "shop", "env": "staging", "router_port": 8080} | theirs,
            {"app": "shop", "env": "production", "router_port": 8080, "hosts": [],
             "is_default": 0}]
    check = lambda: ports.check_router_port(apps, app="shop", env="production",  # noqa: E731
                                            port=8080, **mine)
    if refused:
        with pytest.raises(ConfigError, match="shop \\(staging\\) already uses this port"):
            check()
    else:
        check()


def test_the_agent_environment_keeps_nothing_from_the_shell_but_an_allow_list() -> None:
    env = agent_environment(Path("/h"), {"PATH": "/bin", "API_TOKEN": "s3cret", "LC_ALL": "C",
                                         "HEADWAY_REGISTRY_PASSWORD": "pw", "HOME": "/root"})
    assert env == {"PATH": "/bin", "LC_ALL": "C", "HOME": "/root", "HEADWAY_HOME": "/h"}
