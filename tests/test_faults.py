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
    check = lambda: ports.check_router_port(apps, app="shop", env="production",
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


# the store, under load -----------------------------------------------------------------------
@pytest.mark.integration
def test_a_locked_store_fails_commands_clearly_and_the_agent_rides_it_out(app: App) -> None:
    app.run("deploy")
    agent = agent_pid(app)
    app.set_version("v2")
    with Load(app.url) as load:
        holder = hold_write_lock(app.home / "state.db", 120)
        env = app.env() | {"HEADWAY_STORE_TIMEOUT": "2"}
        result = subprocess.run([sys.executable, "-m", "headway", "deploy"], cwd=app.dir,
                                env=env, capture_output=True, text=True, timeout=60,
                                check=False)
        time.sleep(3)  # the agent meets the lock too, several times
        holder.kill()
        holder.wait()
        time.sleep(1)
    assert result.returncode == 3, result.stderr
    assert f"the store {app.home / 'state.db'} is locked by another process (waited 2s)" \
        in result.stderr
    assert "Traceback" not in result.stderr
    assert load.failed == 0, (load.codes, load.errors)
    assert agent_pid(app) == agent  # it never exited
    log = (app.home / "agent.log").read_text()
    assert "is locked" in log and "works again" in log
    app.run("deploy")  # the lock gone, everything works
    assert app.version() == "v2"


@pytest.fixture
def small_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    """HEADWAY_HOME on a 300 MB tmpfs of its own (set up before `app`, torn down after it)."""
    home = tmp_path / "home"
    home.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300m", "tmpfs", str(home)], check=True)
    yield home
    subprocess.run(["umount", "-l", str(home)], check=False)


def fill(folder: Path) -> Path:
    """Take every free byte of folder's file system."""
    filler = folder / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M", "status=none"], check=False)
    subprocess.run(["sync"], check=False)
    return filler


@pytest.mark.integration
def test_a_full_disk_fails_commands_clearly_and_the_agent_keeps_serving(small_disk: Path,
                                                                       app: App) -> None:
    assert app.home == small_disk
    app.run("deploy")
    agent = agent_pid(app)
    app.set_version("v2")
    with Load(app.url) as load:
        filler = fill(small_disk)
        result = app.run("deploy", check=False)
        time.sleep(3)  # the agent writes samples every 100 ms: each one fails now
        alive = agent_pid(app) == agent
        filler.unlink()
        time.sleep(1)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "the disk is full" in result.stderr and "Traceback" not in result.stderr
    assert load.failed == 0, (load.codes, load.errors)
    assert alive and agent_pid(app) == agent
    app.run("deploy")
    assert app.version() == "v2"


@pytest.mark.integration
def test_a_corrupted_store_fails_commands_and_doctor_says_how_to_restore_it(app: App) -> None:
    app.run("deploy")
    db = app.home / "state.db"
    with Load(app.url) as load:
        size = db.stat().st_size  # the file, and the write-ahead log holding its newest pages
        db.write_bytes(b"garbage!" * (size // 8))
        for suffix in ("-wal", "-shm"):
            db.with_name(f"state.db{suffix}").unlink(missing_ok=True)
        result = app.run("status", check=False)
        doctor = app.run("doctor", check=False)
        time.sleep(2)
    assert result.returncode == 3 and f"the store {db} is corrupted" in result.stderr
    assert "headway doctor" in result.stderr and "Traceback" not in result.stderr
    assert load.failed == 0, (load.codes, load.errors)  # HAProxy and instances never noticed
    assert doctor.returncode == 1 and "FAIL" in doctor.stdout
    copy = snapshots.listing(app.home)[0]
    assert str(copy) in doctor.stdout and "to restore" in doctor.stdout
    # the steps doctor gives, as a person would run them
    os.kill(int((app.home / "agent.pid").read_text()), signal.SIGTERM)
    wait_for(lambda: not agent_running(app.home), "the agent to stop")
    db.rename(db.with_name("state.db.damaged"))
    for suffix in ("-wal", "-shm"):
        db.with_name(f"state.db{suffix}").unlink(missing_ok=True)
    db.write_bytes(copy.read_bytes())
    after = app.run("status", "--json")
    assert json.loads(after.stdout)["active_release"] == 1
    assert "started it again" in after.stderr
    assert app.version() == "v1"
    assert app.run("doctor").returncode == 0


# builds, instances, releases -----------------------------------------------------------------
def unfinished(venvs: Path) -> list[Path]:
    """Virtualenvs being built (or left half-built): no `.complete` marker."""
    return [d for d in venvs.glob("*") if d.is_dir() and d.name != "tools"
            and not (d / ".complete").exists()] if venvs.is_dir() else []


@pytest.mark.integration
def test_a_build_killed_midway_is_failed_by_the_next_command_and_cleaned(app: App) -> None:
    app.run("deploy")
    (app.dir / "requirements.txt").write_text(
        (app.dir / "requirements.txt").read_text() + "six\n")  # a new virtualenv to build
    app.set_version("v2")
    with Load(app.url) as load:
        cli = app.deploy_until("building")
        venvs = app.home / "venvs"
        wait_for(lambda: bool(unfinished(venvs)), "the virtualenv build", 60)
        cli.send_signal(signal.SIGKILL)
        cli.wait()
        rels = releases(app)
    assert load.failed == 0, (load.codes, load.errors)
    assert rels[1]["status"] == "active"
    assert rels[2]["status"] == "failed" and "build interrupted" in rels[2]["failure"]
    assert not unfinished(venvs)
    assert not (app.home / "apps" / "hello" / "production" / "releases" / "2").exists()
    app.run("deploy")
    assert app.version() == "v2"


@pytest.mark.integration
def test_the_agent_replaces_an_instance_that_fails_its_health_check(app: App) -> None:
    app.configure(processes__web__health='interval = "200ms"\ntimeout = "1s"\n'
                                         'restart_after = "2s"')
    app.run("deploy")
    victim = status(app)["instances"][0]
    os.kill(victim["pid"], signal.SIGSTOP)  # hung: alive, answers nothing
    try:
        wait_for(lambda: {i["id"]: i for i in status(app)["instances"]}[victim["id"]]
                 ["restarts"] == 1, "the agent to replace the hung instance", 20)
    finally:
        try:
            os.kill(victim["pid"], signal.SIGCONT)
        except ProcessLookupError:
            pass
    now = {i["id"]: i for i in status(app)["instances"]}[victim["id"]]
    assert now["pid"] != victim["pid"]
    events = app.run("events").stdout
    assert "instance.replaced" in events and "failed its health check for 2s" in events
    wait_for(lambda: {i["id"]: i for i in status(app)["instances"]}[victim["id"]]["health"]
             == "up", "the new instance to be healthy")
    with Load(app.url) as load:
        time.sleep(1)
    assert load.failed == 0, (load.codes, load.errors)


def serves(app: App, version: str) -> bool:
    try:
        return app.version() == version
    except (httpx.HTTPError, ValueError):  # no router, or no healthy server (a 503 page)
        return False


def metric(app: App, name: str) -> str:
    text = httpx.get(f"http://127.0.0.1:{app.metrics_port}/metrics", timeout=5).text
    return "\n".join(line for line in text.splitlines() if line.startswith(name))


@pytest.mark.integration
def test_a_live_release_that_goes_bad_falls_back_to_the_warm_one(app: App) -> None:
    app.configure(deploy='timeout = "20s"\ndrain_timeout = "5s"\nfallback_after = "2s"')
    app.run("deploy")
    app.set_version("v2")
    app.run("deploy")
    folder = Path(releases(app)[2]["number"] and app.home / "apps" / "hello" / "production" /
                  "releases" / "2")
    with Load(app.url) as load:
        (folder / "BROKEN").write_text("unhealthy")  # every instance of 2 restarts unhealthy
        for inst in status(app)["instances"]:
            if inst["release"] == 2:
                os.kill(inst["pid"], signal.SIGKILL)
        went_bad = time.monotonic()
        wait_for(lambda: serves(app, "v1"), "the agent to fall back to release 1", 30)
        took = time.monotonic() - went_bad
    with Load(app.url) as after:
        time.sleep(2)
    assert after.failed == 0 and after.versions.keys() == {"v1"}, after.codes
    print(f"fallback: {load.failed} of {load.total} requests failed, traffic back in {took:.1f}s")
    assert took < 15
    rels = releases(app)
    assert rels[1]["status"] == "active"
    assert rels[2]["status"] == "failed" and "no healthy instance" in rels[2]["failure"]
    assert "deploy.fallback" in app.run("events").stdout
    assert 'result="fallback"' in metric(app, "headway_deploys_total")


# the agent: environment, death, reboot --------------------------------------------------------
@pytest.mark.integration
def test_secret_sources_in_the_shell_never_reach_the_agent(app: App) -> None:
    app.configure(secrets='API_TOKEN = "env:SHELL_ONLY_TOKEN"')
    env = app.env() | {"SHELL_ONLY_TOKEN": "tok-8d7f6e5c"}
    subprocess.run([sys.executable, "-m", "headway", "deploy"], cwd=app.dir, env=env,
                   check=True, capture_output=True, timeout=120)
    environ = Path(f"/proc/{agent_pid(app)}/environ").read_bytes()
    assert b"tok-8d7f6e5c" not in environ and b"SHELL_ONLY_TOKEN" not in environ
    assert f"HEADWAY_HOME={app.home}".encode() in environ


@pytest.mark.integration
def test_a_command_that_finds_the_agent_dead_starts_it_and_says_so(app: App) -> None:
    app.run("deploy")
    os.kill(agent_pid(app), signal.SIGKILL)
    wait_for(lambda: not agent_running(app.home), "the agent to die")
    result = app.run("status")
    assert "the headway agent was not running: started it again" in result.stderr
    assert agent_running(app.home)
    assert "not running" not in app.run("status").stderr  # said once, not every time


def unit_command(unit: Path) -> tuple[list[str], dict[str, str]]:
    """ExecStart and Environment of a systemd unit, as systemd would run it."""
    env, argv = {}, []
    for line in unit.read_text().splitlines():
        if line.startswith("Environment="):
            key, _, value = line.split("=", 1)[1].strip('"').partition("=")
            env[key] = value
        elif line.startswith("ExecStart="):
            argv = line.split("=", 1)[1].split()
    return argv, env


@pytest.mark.integration
def test_after_a_reboot_the_unit_brings_the_live_release_back(app: App) -> None:
    app.run("deploy")
    app.set_version("v2")
    app.run("deploy")
    before = status(app)
    unit = app.home.parent / "headway-agent.service"
    app.run("agent", "install", "--path", str(unit))
    argv, env = unit_command(unit)
    assert env["HEADWAY_HOME"] == str(app.home) and argv[-2:] == ["headway", "agent"]
    # the reboot: every process of the home dies at once
    pids = [agent_pid(app), int((app.home / "router" / "haproxy.pid").read_text().split()[0])]
    pids += [i["pid"] for i in before["instances"]]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not agent_running(app.home), "everything to die")
    with pytest.raises(httpx.HTTPError):
        app.version()
    log = open(app.home / "agent.log", "ab")  # noqa: SIM115 - the child's
    agent = subprocess.Popen(argv, env=env, cwd="/", stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
    try:
        wait_for(lambda: serves(app, "v2"), "the active release to serve again", 30)
        after = status(app)
        assert agent_pid(app) == agent.pid  # the unit's agent did it, none was started for it
        assert after["active_release"] == 2
        assert {i["id"] for i in after["instances"]} == {i["id"] for i in before["instances"]}
        assert releases(app)[1]["status"] == "previous"
        app.run("rollback")  # the warm release came back warm too
        assert app.version() == "v1"
    finally:
        log.close()


# two homes on one host ------------------------------------------------------------------------
def another_app(tmp_path: Path, name: str) -> App:
    """The example app in a HEADWAY_HOME of its own, configured as the `app` fixture does."""
    import shutil

    from tests.conftest import EXAMPLE, free_port

    folder = tmp_path / name / "hello"
    shutil.copytree(EXAMPLE, folder)
    port = free_port()
    toml = (folder / "headway.toml").read_text().replace("port = 18080", f"port = {port}")
    (folder / "headway.toml").write_text(toml)
    other = App(folder, tmp_path / name / "home", port, free_port(), free_port())
    other.configure(
        observe=f"metrics_port = {other.metrics_port}\n"
                f"router_metrics_port = {other.router_metrics_port}",
        router='address = "127.0.0.1"', processes__web__health='interval = "200ms"',
        deploy='timeout = "30s"\ndrain_timeout = "5s"')
    return other


@pytest.mark.integration
def test_two_homes_deploying_at_once_get_distinct_ports(app: App, tmp_path: Path) -> None:
    from tests.conftest import _kill_leftovers

    other = another_app(tmp_path, "second")
    try:
        app.run("deploy")
        with Load(app.url) as load:
            for version in ("v2", "v3"):
                app.set_version(version)
                other.set_version(version)
                both = [a.popen("deploy") for a in (app, other)]
                outputs = [p.communicate(timeout=180)[0] for p in both]
                assert [p.returncode for p in both] == [0, 0], outputs
        assert load.failed == 0, (load.codes, load.errors)
        mine = {i["port"] for i in status(app)["instances"]}
        theirs = {i["port"] for i in status(other)["instances"]}
        assert mine and theirs and not mine & theirs
        assert app.version() == other.version() == "v3"
    finally:
        other.run("destroy", "--yes", check=False, timeout=60)
        _kill_leftovers(other.home)


@pytest.mark.parametrize(("health", "router", "says"), [
    (["up", "down"], ["ready", "ready"], None),
    (["down", "down"], ["ready", "ready"], "every instance of shop in rotation fails"),
    (["up", "up"], ["maint", "maint"], "no instance of shop is in rotation"),
])
def test_status_knows_when_no_server_is_healthy(health: list, router: list,
                                                says: str | None) -> None:
    from headway.agent.control import no_healthy_server

    data = {"app": "shop", "active_release": 2, "instances": [
        {"process": "web", "health": h, "router": r} for h, r in zip(health, router, strict=True)]
        + [{"process": "worker", "health": None, "router": "none"}]}
    why = no_healthy_server(data)
    assert (why is None) if says is None else (says in (why or ""))


@pytest.mark.integration
def test_status_fails_when_no_server_of_the_live_release_is_healthy(app: App) -> None:
    app.run("deploy")
    assert app.run("status").returncode == 0
    folder = app.home / "apps" / "hello" / "production" / "releases" / "1"
    (folder / "BROKEN").write_text("unhealthy")  # no warm release to fall back to
    for inst in status(app)["instances"]:
        os.kill(inst["pid"], signal.SIGKILL)

    def says_so() -> bool:
        result = app.run("status", check=False)
        return result.returncode == 5 and "no healthy server" in result.stderr

    wait_for(says_so, "status to say no server is healthy", 30)
    result = app.run("status", check=False)
    assert "every instance of hello in rotation fails its health check" in result.stderr
    assert "web-r1-" in result.stdout  # the table is still printed, before the error


@pytest.mark.integration
def test_config_check_refuses_a_metrics_port_another_homes_agent_serves(app: App,
                                                                        tmp_path: Path) -> None:
    app.run("deploy")
    other = another_app(tmp_path, "second")
    other.configure(observe=f"metrics_port = {app.metrics_port}")
    result = other.run("config", "check", check=False)
    assert result.returncode == 2, result.stderr
    assert f"observe.metrics_port = {app.metrics_port}: the headway agent of {app.home}" \
        in result.stderr
    other.configure(observe=f"metrics_port = {other.metrics_port}")
    other.run("config", "check")
