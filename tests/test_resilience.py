"""What must hold when parts die: the CLI after the switch, the agent, HAProxy itself; and
in-flight requests across a deploy. Real HAProxy and processes."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import httpx
import pytest

from headway.agent.control import agent_running
from tests.conftest import App, agent_pid, wait_for
from tests.load import Load

pytestmark = pytest.mark.integration  # real HAProxy and processes


def status(app: App) -> dict:
    return json.loads(app.run("status", "--json").stdout)


def test_deploy_killed_after_the_switch_is_finished_not_undone(app: App) -> None:
    app.configure(deploy='drain_timeout = "20s"')
    app.run("deploy")
    app.set_version("v2")
    slow = threading.Thread(target=httpx.get, args=(app.url + "slow?seconds=12",),
                            kwargs={"timeout": 20})
    slow.start()  # keeps the old release draining, so the kill lands mid-drain (however
    time.sleep(0.3)  # long the build takes on a busy machine)
    with Load(app.url) as load:
        cli = app.deploy_until("wait for in-flight requests")
        cli.send_signal(signal.SIGKILL)
        cli.wait()
        assert app.version() == "v2"
        app.run("status")  # it, or the agent, finishes the deploy; it answers either way
    slow.join()
    assert load.failed == 0, (load.codes, load.errors)
    wait_for(lambda: "interrupted deploy of release 2 finished" in app.run("events").stdout,
             "the interrupted deploy to be finished", timeout=30)
    releases = {r["number"]: r["status"] for r in json.loads(app.run("releases", "--json").stdout)}
    assert releases == {1: "previous", 2: "active"}
    app.run("rollback")  # release 1 was parked warm by the recovery
    assert app.version() == "v1"


def test_rollback_killed_after_its_switch_is_finished_not_undone(app: App) -> None:
    """A warm rollback switches before anything else; killed right then, the next command
    finishes it (recovery.decide: the target alone is in rotation), and no request fails."""
    app.configure(deploy='drain_timeout = "20s"')
    app.run("deploy")
    app.set_version("v2")
    app.run("deploy")
    slow = threading.Thread(target=httpx.get, args=(app.url + "slow?seconds=4",),
                            kwargs={"timeout": 10})
    slow.start()  # keeps release 2 draining, so the kill lands before the rollback ends
    time.sleep(0.3)
    with Load(app.url) as load:
        cli = app.popen("rollback")
        assert cli.stdout is not None
        line = next((line for line in cli.stdout if "rolling back to release 1" in line), "")
        cli.send_signal(signal.SIGKILL)
        cli.wait()
        assert "(warm: traffic switched in" in line
        assert app.version() == "v1"
        app.run("status")
    slow.join()
    assert load.failed == 0, (load.codes, load.errors)
    releases = {r["number"]: r["status"] for r in json.loads(app.run("releases", "--json").stdout)}
    assert releases == {1: "active", 2: "previous"}
    assert "interrupted rollback of release 1 finished" in app.run("events").stdout
    app.run("rollback", "2")  # release 2 was parked warm by the recovery
    assert app.version() == "v2"


def test_in_flight_requests_finish_across_a_deploy(app: App) -> None:
    app.run("deploy")
    result: dict[str, object] = {}

    def slow() -> None:
        resp = httpx.get(app.url + "slow?seconds=3", timeout=10)
        result.update(code=resp.status_code, version=resp.json()["version"])

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.5)
    app.set_version("v2")
    app.run("deploy")  # blue-green: drains release 1 until the slow request is done
    thread.join()
    assert result == {"code": 200, "version": "v1"}
    assert app.version() == "v2"


def test_killed_agent_is_restarted_and_adopts_running_instances(app: App) -> None:
    app.run("deploy")
    before = {i["id"]: i["pid"] for i in status(app)["instances"]}
    old_agent = agent_pid(app)
    with Load(app.url) as load:
        os.kill(old_agent, signal.SIGKILL)
        wait_for(lambda: not agent_running(app.home), "the agent to die")
        time.sleep(0.5)
        app.set_version("v2")
        app.run("deploy")  # starts a new agent
    assert load.failed == 0, (load.codes, load.errors)
    assert agent_pid(app) != old_agent
    # the old release's instances were adopted: still running, and parked warm
    now = {i["id"]: i for i in status(app)["instances"]}
    assert all(now[i]["pid"] == pid for i, pid in before.items())
    victim = next(i for i in now.values() if i["release"] == 2)
    os.kill(victim["pid"], signal.SIGKILL)
    wait_for(lambda: {i["id"]: i for i in status(app)["instances"]}[victim["id"]]["restarts"] == 1,
             "the new agent to restart a crashed instance")


def test_haproxy_killed_is_restarted_by_the_agent_with_its_servers(app: App) -> None:
    app.run("deploy")
    app.set_version("v2")
    app.run("deploy")
    pidfile = app.home / "router" / "haproxy.pid"
    old = int(pidfile.read_text().split()[0])
    os.kill(old, signal.SIGKILL)
    for line in os.popen(f"pgrep -f {app.home}/router/haproxy.cfg").read().split():
        os.kill(int(line), signal.SIGKILL)

    def serves_v2() -> bool:
        try:
            return app.version() == "v2"
        except httpx.HTTPError:
            return False

    wait_for(serves_v2, "HAProxy to be restarted by the agent")
    routers = {i["release"]: i["router"] for i in status(app)["instances"]}
    assert routers == {1: "maint", 2: "ready"}  # the warm release is still parked, not live


def test_command_that_does_not_exist_fails_the_deploy_clearly(app: App) -> None:
    toml = app.dir / "headway.toml"
    toml.write_text(toml.read_text().replace('"python3 app.py"', '"no-such-server --port $PORT"'))
    result = app.run("deploy", check=False)
    assert result.returncode == 4
    assert "exited with code 127" in result.stderr
    assert "cannot start no-such-server" in result.stderr
