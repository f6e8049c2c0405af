"""End to end through the CLI, with real HAProxy and real app processes on loopback: every
request sent through the router during deploys and rollbacks must succeed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import App
from tests.load import Load

pytestmark = pytest.mark.integration  # real HAProxy and processes


def status(app: App) -> dict:
    return json.loads(app.run("status", "--json").stdout)


def test_blue_green_and_rolling_deploys_under_load_drop_nothing(app: App) -> None:
    app.run("deploy")
    assert app.version() == "v1"
    with Load(app.url) as load:
        app.set_version("v2")
        app.run("deploy")
        app.use_strategy("rolling")
        app.set_version("v3")
        app.run("deploy")
        time.sleep(0.5)
    assert load.failed == 0, (load.codes, load.errors)
    assert load.total > 200
    assert {"v1", "v2", "v3"} <= set(load.versions)
    assert app.version() == "v3"
    live = [i for i in status(app)["instances"] if i["router"] == "ready"]
    assert {i["release"] for i in live} == {3} and len(live) == 2


def test_second_identical_deploy_changes_nothing(app: App) -> None:
    app.run("deploy")
    again = app.run("deploy")
    assert "nothing to do" in again.stdout
    assert [r["number"] for r in json.loads(app.run("releases", "--json").stdout)] == [1]


def test_unhealthy_release_is_refused_and_traffic_stays(app: App) -> None:
    app.run("deploy")
    with Load(app.url) as load:
        app.set_version("v2", broken="503")
        result = app.run("deploy", check=False)
    assert result.returncode == 4
    assert "not healthy in time" in result.stderr and "answered 503" in result.stderr
    assert "traffic stayed on release 1" in result.stderr
    assert load.failed == 0 and set(load.versions) == {"v1"}
    rels = {r["number"]: r["status"] for r in json.loads(app.run("releases", "--json").stdout)}
    assert rels == {1: "active", 2: "failed"}
    assert all(i["release"] == 1 for i in status(app)["instances"])


def test_release_that_exits_at_once_fails_fast_with_its_log(app: App) -> None:
    app.run("deploy")
    app.set_version("v2", broken="crash")
    started = time.monotonic()
    result = app.run("deploy", check=False)
    assert result.returncode == 4
    assert time.monotonic() - started < 15
    assert "exited with code" in result.stderr
    assert "refusing to start (BROKEN=crash)" in result.stderr  # the instance's own log line
    assert app.version() == "v1"


def test_replicas_racing_at_boot_lose_one_start_and_the_release_still_deploys(
        app: App, shared_tmp: Path) -> None:
    """Two replicas that race at boot (both creating the same table) make one exit once; the
    agent restarts it and the release goes live. One that exits every time still fails fast
    (the test above)."""
    # the markers live where the app's own user may write (as root, a release is read-only)
    shared = shared_tmp
    race = (f"mkdir {shared}/started 2>/dev/null || [ -f {shared}/retried ] || {{ touch "
            f"{shared}/retried; echo lost the race >&2; exit 1; }}; exec python3 app.py")
    toml = app.dir / "headway.toml"
    toml.write_text(toml.read_text().replace('command = "python3 app.py"',
                                             f'command = "sh -c \'{race}\'"'))
    result = app.run("deploy")
    assert "release 1 is live" in result.stdout
    assert app.version() == "v1"
    assert "lost the race" in app.run("logs", "-n", "50").stdout


def test_warm_rollback_is_a_traffic_switch_without_failed_requests(app: App) -> None:
    app.run("deploy")
    app.set_version("v2")
    app.run("deploy")
    with Load(app.url) as load:
        started = time.monotonic()
        app.run("rollback")
        took = time.monotonic() - started
        time.sleep(0.3)
        assert app.version() == "v1"
        for target, version in (("2", "v2"), ("1", "v1"), ("2", "v2")):  # both stay warm
            app.run("rollback", target)
            time.sleep(0.3)
            assert app.version() == version
    assert load.failed == 0, (load.codes, load.errors)
    assert took < 3  # the whole command, Python start-up included; bench/ measures the switch
    assert "rolled back to release 1" in app.run("events", "--json").stdout


def test_crashed_instance_is_restarted_without_failed_requests(app: App) -> None:
    app.run("deploy")
    victim = status(app)["instances"][0]
    with Load(app.url) as load:
        os.kill(victim["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            now = {i["id"]: i for i in status(app)["instances"]}[victim["id"]]
            if now["restarts"] >= 1 and now["state"] == "running" and now["health"] == "up":
                break
            time.sleep(0.2)
    assert now["restarts"] == 1 and now["pid"] != victim["pid"]
    assert load.failed == 0, (load.codes, load.errors)


def test_killed_deploy_is_recovered_by_the_next_command(app: App) -> None:
    app.run("deploy")
    app.use_strategy("rolling")
    app.set_version("v2")
    with Load(app.url) as load:
        cli = app.deploy_until("wait until web.1 are healthy")
        cli.send_signal(signal.SIGKILL)
        cli.wait()
        time.sleep(0.5)
        assert app.version() == "v1"
        app.run("status")  # the next command (or the agent, whichever comes first) recovers
        time.sleep(0.3)
    assert load.failed == 0, (load.codes, load.errors)
    assert "interrupted deploy of release 2 undone" in app.run("events").stdout
    assert {i["release"] for i in status(app)["instances"] if i["router"] == "ready"} == {1}
    deadline = time.monotonic() + 15
    while {i["release"] for i in status(app)["instances"]} != {1}:
        assert time.monotonic() < deadline, "release 2's instance was never stopped"
        time.sleep(0.2)
    app.run("deploy")
    assert app.version() == "v2"


def test_second_concurrent_deploy_names_the_holder(app: App) -> None:
    app.run("deploy")
    app.set_version("v2", broken="503")  # a deploy that waits for health until it times out
    first = app.popen("deploy")
    time.sleep(3)
    second = app.run("deploy", check=False)
    first.kill()
    first.wait()
    assert second.returncode == 3
    assert "is locked by `headway deploy hello --env production`" in second.stderr
    assert f"pid {first.pid}" in second.stderr


def test_destroy_stops_everything(app: App) -> None:
    app.run("deploy")
    pids = [i["pid"] for i in status(app)["instances"]]
    router = int((app.home / "router" / "haproxy.pid").read_text().split()[0])
    # a client half-way through its request would hold a soft-stopping HAProxy for 60 s
    with socket.create_connection(("127.0.0.1", app.port)) as slow:
        slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        app.run("destroy", "--yes")
        assert not os.path.exists(f"/proc/{router}"), "HAProxy outlived destroy"
    time.sleep(0.2)
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}")
    try:
        httpx.get(app.url, timeout=2)
        raise AssertionError("the router still answers after the last app was destroyed")
    except httpx.ConnectError:
        pass


def test_destroying_one_app_frees_its_port_and_the_other_app_serves_on(app: App,
                                                                     tmp_path: Path) -> None:
    # the router kept a destroyed app's frontend (a 503 on its port) while another app lived
    from tests.test_isolation import headway, other_app

    app.run("deploy")
    other = other_app(app, tmp_path)
    headway(app, other, "deploy")
    port = int((other / "headway.toml").read_text().split("port = ")[1].split()[0])
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
    headway(app, other, "destroy", "--yes")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
    assert app.version() == "v1"


@pytest.mark.integration
def test_a_home_inside_the_app_folder_stays_out_of_its_releases(app: App) -> None:
    # HEADWAY_HOME in the app folder: its sockets made the snapshot crash, and
    # its key and store would have been copied into a release the app can read
    home = app.dir / "state-home"
    env = app.env() | {"HEADWAY_HOME": str(home)}
    deploy = subprocess.run([sys.executable, "-m", "headway", "deploy"], cwd=app.dir, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    try:
        assert deploy.returncode == 0, deploy.stderr
        again = subprocess.run([sys.executable, "-m", "headway", "deploy", "--force"],
                               cwd=app.dir, env=env, capture_output=True, text=True,
                               timeout=120, check=False)  # now with the router's sockets there
        assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
        releases = (home / "apps" / "hello" / "production" / "releases").resolve()
        assert not list(releases.rglob("master.key")) and not list(releases.rglob("state.db"))
    finally:
        subprocess.run([sys.executable, "-m", "headway", "destroy", "--yes"], cwd=app.dir,
                       env=env, capture_output=True, timeout=60, check=False)
