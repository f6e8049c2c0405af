"""Deploys to servers over SSH (headway.fleet), end to end: the test makes its own hosts,
network namespaces joined to this one by veth pairs, each with its own sshd, host key and
$HEADWAY_HOME (they share the file system and process table with this machine), and drives
the real CLI against them: trust, setup, a fleet deploy under load through each host's
router, a host cut off mid-deploy, converge, and an unknown host key under strict. The hosts
have no route to a package index: they install from the wheels `servers setup` ships and
build the app's virtualenv from uv's cache offline (UV_OFFLINE in their login environment).
Fast unit tests pin the ssh argv, host parsing and error messages."""

from __future__ import annotations

import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from headway.errors import ConfigError, NotFound, RuntimeFailure
from headway.fleet import ssh
from headway.fleet.artifact import archive_image, host_config, release_archive
from headway.fleet.hosts import Host, batches, parse_host, pick
from tests.conftest import EXAMPLE, App, _kill_leftovers, registry_server, wait_for
from tests.load import Load
from tests.test_containers import REGISTRY_PASSWORD, base_images  # noqa: F401 - a fixture

ROUTER_PORT = 18080


@dataclass
class LabHost:
    """One test host: namespace `ns`, veth `dev` (this side) up to `address` (its side)."""

    ns: str
    dev: str
    address: str
    home: Path
    folder: Path

    @property
    def url(self) -> str:
        return f"http://{self.address}:{ROUTER_PORT}/"

    @property
    def near(self) -> str:
        """This machine's address on the host's link (the hosts reach it by their routes)."""
        return self.address.rsplit(".", 1)[0] + ".1"

    def version(self, port: int = ROUTER_PORT) -> str:
        return str(httpx.get(f"http://{self.address}:{port}/", timeout=5).json()["version"])

    def cut(self, up: bool) -> None:
        subprocess.run(["ip", "link", "set", self.dev, "up" if up else "down"], check=True)


@dataclass
class Lab:
    """Hosts, a client key they all accept, and a control machine's home and app folder."""

    base: Path
    key: Path
    hosts: list[LabHost] = field(default_factory=list)
    sshd_pids: list[int] = field(default_factory=list)

    @classmethod
    def make(cls, base: Path, count: int) -> Lab:
        lab = cls(base, base / "id_ed25519")
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "headway-test", "-f",
              str(lab.key)])
        shutil.copy(f"{lab.key}.pub", base / "authorized_keys")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        tag, net = f"hwf{os.getpid() % 100000}", _free_net()
        try:
            for n in range(count):
                lab._host(f"{tag}{n}", f"10.{net}.{n * 4}", n)
        except BaseException:
            lab.remove()
            raise
        return lab

    def _host(self, name: str, net: str, n: int) -> None:
        folder = self.base / f"host{n}"
        folder.mkdir()
        host = LabHost(ns=name, dev=f"{name}a", address=f"{net}.2", home=folder / "home",
                        folder=folder)
        _run(["ip", "netns", "add", name])
        self.hosts.append(host)  # from here on, remove() takes it away
        _run(["ip", "link", "add", host.dev, "type", "veth", "peer", "name", f"{name}b"])
        _run(["ip", "link", "set", f"{name}b", "netns", name])
        _run(["ip", "addr", "add", f"{net}.1/30", "dev", host.dev])
        _run(["ip", "link", "set", host.dev, "up"])
        for argv in (["addr", "add", f"{net}.2/30", "dev", f"{name}b"],
                     ["link", "set", f"{name}b", "up"], ["link", "set", "lo", "up"],
                     ["route", "add", "default", "via", f"{net}.1"]):  # the other near sides
            _run(["ip", "-n", name, *argv])
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "host_key")])
        (folder / "sshd_config").write_text(
            f"ListenAddress {host.address}\nPort 22\nHostKey {folder / 'host_key'}\n"
            f"PidFile {folder / 'sshd.pid'}\nAuthorizedKeysFile {self.base / 'authorized_keys'}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            "PermitRootLogin prohibit-password\nStrictModes no\n"
            "Subsystem sftp internal-sftp\n"
            f"SetEnv HEADWAY_HOME={host.home} UV_OFFLINE=1\n")
        # nsenter, not `ip netns exec`: that one mounts a sysfs of its own, without the cgroup
        # mount podman's runc needs; the host only needs its own network
        _run(["nsenter", f"--net=/var/run/netns/{name}", "/usr/sbin/sshd", "-f",
              str(folder / "sshd_config")])
        pidfile = folder / "sshd.pid"
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), "sshd")
        self.sshd_pids.append(int(pidfile.read_text()))

    def remove(self) -> None:
        for pidfile in [h.folder / "sshd.pid" for h in self.hosts]:
            if pidfile.exists() and pidfile.read_text().strip():
                self.sshd_pids.append(int(pidfile.read_text()))
        for pid in set(self.sshd_pids):
            _kill(pid)
        for host in self.hosts:
            subprocess.run(["ip", "netns", "del", host.ns], capture_output=True, check=False)
            subprocess.run(["ip", "link", "del", host.dev], capture_output=True, check=False)

    def app(self, name: str, *, replicas: int = 2, home: Path | None = None) -> ControlApp:
        """A copy of examples/hello whose [servers] are these hosts, and a control home."""
        folder = self.base / name
        shutil.copytree(EXAMPLE, folder)
        servers = ", ".join(f'"root@{h.address}"' for h in self.hosts)
        text = (folder / "headway.toml").read_text()
        text = text.replace('path = "/up"', 'path = "/up"\ninterval = "200ms"\ntimeout = "1s"')
        text = text.replace('strategy = "blue-green"', 'strategy = "blue-green"\ntimeout = "30s"'
                            '\ndrain_timeout = "3s"').replace("replicas = 2",
                                                              f"replicas = {replicas}")
        # the hosts share this machine's port registry: their agents' ports would collide
        text += ("\n[observe]\nmetrics_port = 0\nrouter_metrics_port = 0\n"
                 f"\n[servers]\nweb = [{servers}]\n\n[ssh]\nidentity = \"{self.key}\"\n"
                 'connect_timeout = "3s"\n')
        (folder / "headway.toml").write_text(text)
        return ControlApp(folder, home or self.base / f"{name}-control")


class ControlApp(App):
    """The control machine's app: conftest's App with no router port of its own (each host
    has one) and a longer default timeout (a fleet deploy ships to every host)."""

    def __init__(self, folder: Path, home: Path) -> None:
        super().__init__(folder, home, 0)

    def run(self, *args: str, check: bool = True,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return super().run(*args, check=check, timeout=timeout)

    def set_parallel(self, hosts: int) -> None:
        toml = self.dir / "headway.toml"
        text = "\n".join(line for line in toml.read_text().splitlines()
                         if not line.startswith("hosts_in_parallel"))
        toml.write_text(text.replace("[deploy]\n", f"[deploy]\nhosts_in_parallel = {hosts}\n"))


def _run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=60)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def _free_net() -> int:
    """A second octet for 10.X.0.0/16 that no address on this machine uses."""
    used = subprocess.run(["ip", "-br", "addr"], capture_output=True, text=True,
                          check=True).stdout
    while True:
        octet = random.randint(100, 250)
        if f" 10.{octet}." not in used:
            return octet


def warm_uv_cache() -> None:
    """The hosts build hello's virtualenv offline from uv's cache: fill it here, online."""
    venv = Path(sys.executable).parent
    with __import__("tempfile").TemporaryDirectory() as tmp:
        _run([str(venv / "uv"), "venv", "--quiet", "--python", sys.executable, f"{tmp}/v"])
        subprocess.run([str(venv / "uv"), "pip", "install", "--quiet", "--python",
                        f"{tmp}/v/bin/python", "-r", str(EXAMPLE / "requirements.txt")],
                       check=True, capture_output=True, timeout=600)


def stop_hosts(lab: Lab, app: str = "hello") -> None:
    """Each host's app, agent and HAProxy, stopped as its own home would (shared process table)."""
    from concurrent.futures import ThreadPoolExecutor

    from headway.runtime.appuser import app_root

    def stop(host: LabHost) -> None:
        if (host.home / "state.db").exists():
            subprocess.run([sys.executable, "-m", "headway", "--app", app, "destroy", "--yes"],
                           env=dict(os.environ, HEADWAY_HOME=str(host.home)),
                           capture_output=True, timeout=60, check=False)
        _kill_leftovers(host.home)
        shutil.rmtree(app_root(host.home), ignore_errors=True)
    with ThreadPoolExecutor(max_workers=len(lab.hosts) or 1) as pool:
        list(pool.map(stop, lab.hosts))


def close_ssh(lab: Lab, app: ControlApp) -> None:
    """Shared ssh connections (ControlPersist) of the control home: ended."""
    from headway.store.db import socket_dir

    control = socket_dir(app.home, "ssh")
    for sock in control.glob("*") if control.is_dir() else []:
        subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "x"],
                       capture_output=True, timeout=10, check=False)
    shutil.rmtree(control, ignore_errors=True)


# the lab: module-scoped (namespaces, sshd, Headway installed on each host once) ---------------
@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if os.geteuid() != 0 or not shutil.which("sshd", path="/usr/sbin") \
            or not shutil.which("ip", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"):
        pytest.fail("fleet tests need root, iproute2 and openssh-server (scripts/setup.sh)")
    warm_uv_cache()
    made = Lab.make(tmp_path_factory.mktemp("fleet"), 2)
    try:
        yield made
    finally:
        stop_hosts(made)
        made.remove()


@pytest.fixture(scope="module")
def fleet(lab: Lab) -> Iterator[ControlApp]:
    """hello with [servers] = the lab's hosts, trusted and set up."""
    app = lab.app("hello", replicas=1)  # one instance per host: the switch is what counts
    try:
        app.run("servers", "trust")
        app.run("servers", "setup", timeout=900)
        yield app
    finally:
        close_ssh(lab, app)


@pytest.mark.integration
def test_fleet_deploy_under_load_then_cut_off_host_and_converge(lab: Lab,
                                                                 fleet: ControlApp) -> None:
    one, two = lab.hosts
    check = fleet.run("servers", "check", "--json")
    assert '"ready": true' in check.stdout and '"ready": false' not in check.stdout
    fleet.set_parallel(2)
    fleet.set_version("1.0.0")
    secret = "s3cr3t-" + os.urandom(6).hex()  # set here, reaches each host's store by stdin
    subprocess.run([sys.executable, "-m", "headway", "secrets", "set", "API_TOKEN"],
                   input=secret, text=True, cwd=fleet.dir, check=True, capture_output=True,
                   env=dict(os.environ, HEADWAY_HOME=str(fleet.home)))
    first = fleet.run("deploy")
    assert "live on 2 host(s)" in first.stdout, first.stdout
    assert secret not in first.stdout + first.stderr
    names = subprocess.run([sys.executable, "-m", "headway", "--app", "hello", "secrets",
                            "list", "--json"], env=dict(os.environ, HEADWAY_HOME=str(two.home)),
                           capture_output=True, text=True, check=True).stdout
    assert "API_TOKEN" in names
    assert one.version() == two.version() == "1.0.0"
    here = (f"import socket; socket.socket().bind(({two.address!r}, 0)); "  # host 2's address
            "print(open('VERSION').read().strip())")  # binds in host 2's namespace only
    ran = fleet.run("run", "--host", two.address, "--", "python3", "-c", here)
    assert ran.stdout.strip() == "1.0.0", ran.stdout + ran.stderr
    assert fleet.run("run", "--", "python3", "-c", "raise SystemExit(7)",
                     check=False).returncode == 7  # the command's exit code, from host 1
    inside = fleet.run("exec", "--host", one.address, "--", "cat", "VERSION")
    assert inside.stdout.strip() == "1.0.0"

    fleet.set_version("2.0.0")  # zero downtime on every host, through each host's router
    with Load(one.url, threads=2) as load_one, Load(two.url, threads=2) as load_two:
        fleet.run("deploy")
        time.sleep(0.5)
    for load in (load_one, load_two):
        assert load.failed == 0 and load.total > 20, (load.codes, load.errors, load.failures)
        assert load.versions["2.0.0"] > 0
    assert one.version() == two.version() == "2.0.0"
    status = fleet.run("status", "--host", two.address).stdout
    assert two.address in status and one.address not in status
    releases = fleet.run("releases", "--json").stdout
    assert f'"host": "root@{one.address}"' in releases
    events = json.loads(fleet.run("events", "--host", two.address, "--json").stdout)
    assert {e["host"] for e in events} == {f"root@{two.address}"}
    assert any(e["release"] == 2 for e in events)
    logs = [json.loads(line) for line in fleet.run("logs", "-n", "2", "--json").stdout.split("\n")
            if line]
    assert {row["host"] for row in logs} == {f"root@{h.address}" for h in (one, two)}

    fleet.set_parallel(1)  # one host after the other: the second is cut off as it starts
    fleet.set_version("3.0.0")
    deploy = fleet.popen("deploy")
    assert deploy.stdout is not None
    lines = []
    for line in deploy.stdout:
        lines.append(line)
        if f"root@{two.address}: deploying" in line:
            two.cut(up=False)
            break
    try:
        out = "".join(lines) + deploy.stdout.read()
        assert deploy.wait(timeout=120) == 4, out
    finally:
        two.cut(up=True)
    assert f"root@{two.address}" in out and "back on its release 2" in out, out
    assert one.version() == "2.0.0"  # the switched host went back: one release fleet-wide

    converged = fleet.run("servers", "converge")
    assert one.version() == two.version() == "2.0.0", converged.stdout

    back = fleet.run("rollback")  # the fleet's release before, on every host
    assert one.version() == two.version() == "1.0.0", back.stdout

    lacking = fleet.run("rollback", "3", check=False)  # 3.0.0 went live on host 1 only
    assert lacking.returncode == NotFound.exit_code, lacking.stderr
    assert f"root@{two.address}: has no release of artifact" in lacking.stderr
    assert one.version() == two.version() == "1.0.0"  # nothing changed anywhere
    named = fleet.run("rollback", "2")  # a named release: the artifact both numbered 2
    assert one.version() == two.version() == "2.0.0", named.stdout


@pytest.mark.integration
@pytest.mark.usefixtures("base_images")
def test_podman_fleet_runs_one_image_pulled_by_digest_on_every_host(
        lab: Lab, fleet: ControlApp, tmp_path: Path) -> None:
    # built once here, pushed to a real registry on this machine's side of host 0's link,
    # pulled by every host by digest (its own request log says from where), then each host's
    # health-gated podman deploy; a host that cannot reach the registry fails the deploy
    # before any host switches
    one, two = lab.hosts
    log = tmp_path / "registry.log"
    with registry_server(tmp_path, REGISTRY_PASSWORD, address=one.near, log=log) as server:
        app = lab.app("boxed", replicas=1, home=fleet.home)  # hello's trust holds
        _small_image(app.dir)
        toml = app.dir / "headway.toml"
        toml.write_text(toml.read_text().replace('name = "hello"', 'name = "boxed"')
                        .replace('runtime = "process"', 'runtime = "podman"')
                        .replace(f"port = {ROUTER_PORT}", f"port = {BOXED_PORT}"))
        app.set_parallel(2)
        app.configure(registry=f'server = "{server}"\ntls_verify = false\nusername = "ci"')
        subprocess.run([sys.executable, "-m", "headway", "secrets", "set", "REGISTRY_PASSWORD"],
                       input=REGISTRY_PASSWORD, text=True, cwd=app.dir, check=True,
                       capture_output=True, env=app.env())
        try:
            app.set_version("1.0.0")
            first = app.run("deploy", timeout=600)
            assert "live on 2 host(s)" in first.stdout, first.stdout
            assert REGISTRY_PASSWORD not in first.stdout + first.stderr
            assert one.version(BOXED_PORT) == two.version(BOXED_PORT) == "1.0.0"
            digest = _digest_pulled(first.stdout + first.stderr, server)
            for host in (one, two):  # each host asked the registry for that manifest
                assert _pulled_from(log, digest, host.address), host.address

            app.set_version("2.0.0")  # each host's own router keeps answering
            urls = [f"http://{h.address}:{BOXED_PORT}/" for h in (one, two)]
            with Load(urls[0], threads=1) as load_one, Load(urls[1], threads=1) as load_two:
                second = app.run("deploy", timeout=600)
            assert one.version(BOXED_PORT) == two.version(BOXED_PORT) == "2.0.0", second.stdout
            assert _digest_pulled(second.stdout + second.stderr, server) != digest
            for load in (load_one, load_two):
                assert load.failed == 0 and load.versions["2.0.0"] > 0, load.failures
            images = {_running_image(h) for h in (one, two)}
            assert len(images) == 1 and None not in images  # the same image on both

            # host 2 goes back on its own (a local rollback there): behind the fleet, until
            # converge ships it the archive from host 1 and it pulls the image by digest
            local = subprocess.run(["nsenter", f"--net=/var/run/netns/{two.ns}", sys.executable,
                                    "-m", "headway", "--app", "boxed", "rollback"],
                                   env=dict(os.environ, HEADWAY_HOME=str(two.home)),
                                   capture_output=True, text=True, timeout=120, check=False)
            assert local.returncode == 0, local.stderr
            assert two.version(BOXED_PORT) == "1.0.0"
            converged = app.run("servers", "converge", timeout=600)
            assert "1 host(s) brought to artifact" in converged.stdout, converged.stdout
            assert one.version(BOXED_PORT) == two.version(BOXED_PORT) == "2.0.0"
            assert {_running_image(h) for h in (one, two)} == images

            app.set_version("1.0.0")  # in the registry already (not built again), but host 2
            # cannot reach the registry: the deploy fails before any host switches
            subprocess.run(["ip", "-n", two.ns, "route", "del", "default"], check=True)
            try:
                third = app.run("deploy", check=False, timeout=600)
            finally:
                subprocess.run(["ip", "-n", two.ns, "route", "add", "default", "via",
                                two.near], check=True)
            assert third.returncode == RuntimeFailure.exit_code, third.stderr
            assert f"root@{two.address}: pulling the image failed" in third.stderr
            assert "cannot pull" in third.stderr and "unreachable" in third.stderr
            assert "Traceback" not in third.stderr
            assert one.version(BOXED_PORT) == two.version(BOXED_PORT) == "2.0.0"
        finally:
            _destroy_on_hosts(lab, "boxed")
            close_ssh(lab, app)
            _remove_images(server)


@pytest.mark.integration
def test_a_worker_host_runs_only_the_worker_and_no_router(lab: Lab, fleet: ControlApp) -> None:
    # [servers] roles: web on host 1 (no worker there), the worker on host 2 (no web, no
    # router there); deploys and a rollback replace each host's own processes
    one, two = lab.hosts
    app = lab.app("roles", replicas=1, home=fleet.home)  # hello's trust and setup hold
    toml = app.dir / "headway.toml"
    (app.dir / "worker.py").write_text(
        "import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
        "while True:\n    time.sleep(1)\n")
    serve_on(app, web=[f"root@{one.address}"], worker=[f"root@{two.address}"])
    text = toml.read_text()
    (app.dir / "migrate.py").write_text("print('migrated')\n")
    toml.write_text(text.replace('name = "hello"', 'name = "roles"')
                    .replace(f"port = {ROUTER_PORT}", f"port = {ROLES_PORT}")
                    + '\n[processes.worker]\ncommand = "python3 worker.py"\n'
                    '\n[release]\ncommand = "python3 migrate.py"\n')
    try:
        app.set_version("1.0.0")
        plan = app.run("deploy", "--dry-run").stdout
        assert f"root@{one.address} (web)" in plan and f"root@{two.address} (worker)" in plan
        first = app.run("deploy")
        assert "live on 2 host(s)" in first.stdout, first.stdout
        assert one.version(ROLES_PORT) == "1.0.0"
        web, worker = _host_status(one, "roles"), _host_status(two, "roles")
        assert {(i["process"], i["release"]) for i in web["instances"]} == {("web", 1)}
        assert {(i["process"], i["release"]) for i in worker["instances"]} == {("worker", 1)}
        assert worker["router"] == "not used (no web process here)"
        assert _migrated(app) == [(f"root@{one.address}", 1)]  # once, on the first host
        with pytest.raises(httpx.ConnectError):  # nothing listens for the app on host 2
            httpx.get(f"http://{two.address}:{ROLES_PORT}/", timeout=5)

        app.set_version("2.0.0")
        with Load(f"http://{one.address}:{ROLES_PORT}/", threads=1) as load:
            app.run("deploy")
        assert load.failed == 0 and load.versions["2.0.0"] > 0, load.failures
        worker = _host_status(two, "roles")
        assert {(i["process"], i["release"]) for i in worker["instances"]} == {("worker", 2)}
        assert worker["active_release"] == 2
        assert _migrated(app) == [(f"root@{one.address}", 1), (f"root@{one.address}", 2)]

        back = app.run("rollback")
        assert one.version(ROLES_PORT) == "1.0.0", back.stdout
        worker = _host_status(two, "roles")
        assert {(i["process"], i["release"]) for i in worker["instances"]} == {("worker", 1)}

        gone = app.run("destroy", "--yes")  # on every host
        assert f"root@{one.address}" in gone.stdout and f"root@{two.address}" in gone.stdout
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://{one.address}:{ROLES_PORT}/", timeout=5)
        assert "not deployed there" in app.run("destroy", "--yes").stdout  # twice: no error
    finally:
        _destroy_on_hosts(lab, "roles")
        close_ssh(lab, app)


@pytest.mark.integration
def test_promote_from_the_control_machine_reaches_each_hosts_paused_canary(
        lab: Lab, fleet: ControlApp) -> None:
    # a manual canary on 2 hosts, one after the other: each host's deploy waits for promote;
    # `headway promote` here reaches the host whose deploy is running, and says the other has
    # none
    one, two = lab.hosts
    app = lab.app("paused", replicas=1, home=fleet.home)
    toml = app.dir / "headway.toml"
    toml.write_text(toml.read_text().replace('name = "hello"', 'name = "paused"')
                    .replace(f"port = {ROUTER_PORT}", f"port = {PAUSED_PORT}")
                    + "\n[deploy.canary]\nmanual = true\nsteps = [50, 100]\n")
    app.configure(deploy='strategy = "canary"')
    try:
        app.set_version("1.0.0")
        app.run("deploy")  # a first deploy has nothing to compare: no canary
        app.set_version("2.0.0")
        deploy = app.popen("deploy")
        assert deploy.stdout is not None
        lines: list[str] = []
        for host, other in ((one, two), (two, one)):
            for line in deploy.stdout:
                lines.append(line)
                if f"root@{host.address}: " in line and "paused: `headway promote`" in line:
                    break
            sent = app.run("promote").stdout
            assert f"root@{host.address}" in sent and "promote sent" in sent, sent
            assert f"root@{other.address}" in sent and "no deploy running there" in sent, sent
        out = "".join(lines) + deploy.stdout.read()
        assert deploy.wait(timeout=120) == 0, out
        assert one.version(PAUSED_PORT) == two.version(PAUSED_PORT) == "2.0.0"
        idle = app.run("promote", check=False)
        assert idle.returncode == NotFound.exit_code and "is running on any host" in idle.stderr
    finally:
        _destroy_on_hosts(lab, "paused")
        close_ssh(lab, app)


PAUSED_PORT = 18083
NO_SUDO = "hwnosudo"  # a login user of the test hosts with neither root nor sudo


@pytest.mark.integration
def test_a_host_without_root_or_sudo_is_refused_installing_packages(lab: Lab,
                                                                   tmp_path: Path) -> None:
    # a second sshd on host 2 (port 2222) for a user that is not root, has no sudo, and whose
    # login PATH finds a HAProxy that does not run: setup --install-packages would need apt-get
    # as root; it is refused naming the host and the fix, and nothing is installed there
    two = lab.hosts[1]
    home = Path("/var/tmp") / NO_SUDO
    if subprocess.run(["id", NO_SUDO], capture_output=True, check=False).returncode:
        _run(["useradd", "--create-home", "--home-dir", str(home), "--shell", "/bin/sh",
              "--password", "*", NO_SUDO])  # no password, but not locked (sshd refuses "!")
    for folder in (home / "bin", home / ".ssh"):
        folder.mkdir(parents=True, exist_ok=True)
    (home / "bin" / "haproxy").write_text("#!/bin/sh\nexit 127\n")
    (home / "bin" / "haproxy").chmod(0o755)
    shutil.copy(f"{lab.key}.pub", home / ".ssh" / "authorized_keys")
    (home / ".ssh" / "environment").write_text(
        f"PATH={home / 'bin'}:/usr/bin:/bin\nHEADWAY_HOME={home / 'headway'}\n")
    shutil.rmtree(home / "headway", ignore_errors=True)
    _run(["chown", "-R", f"{NO_SUDO}:", str(home)])
    app = lab.app("nosudo", home=tmp_path / "control")
    host = f"{NO_SUDO}@{two.address}:2222"
    serve_on(app, web=[host])
    try:
        with second_sshd(lab, two, 2222, "AuthorizedKeysFile .ssh/authorized_keys\n"
                                         "PermitUserEnvironment yes\n"):
            app.run("servers", "trust")
            check = app.run("servers", "check", "--json", check=False)  # rows, then the error
            assert check.returncode == ConfigError.exit_code, check.stdout
            row = json.JSONDecoder().raw_decode(check.stdout)[0][0]
            assert row["privilege"] is None and row["haproxy"] is None and not row["ready"], row
            assert "haproxy" in row["missing"] and row["home"] == str(home / "headway")
            plain = app.run("servers", "setup", check=False)
            assert plain.returncode == ConfigError.exit_code, plain.stderr
            assert f"{host}: lacks haproxy" in plain.stdout + plain.stderr
            assert "install it there as root" in plain.stdout + plain.stderr  # no dead end
            refused = app.run("servers", "setup", "--install-packages", check=False)
        out = refused.stdout + refused.stderr
        assert refused.returncode == ConfigError.exit_code, out
        assert (f"{host}: lacks haproxy; installing needs root or password-less sudo, and the "
                "login user has neither") in " ".join(out.split()), out
        assert "Traceback" not in out and not (home / "headway").exists()  # nothing installed
    finally:
        close_ssh(lab, app)


@pytest.mark.integration
def test_a_jump_host_reaches_a_host_this_machine_cannot(lab: Lab, tmp_path: Path) -> None:
    # a second sshd on host 2 that lets root in only from host 1's address: this machine is
    # refused there, and reaches it through [ssh] jump = host 1 (whose key is checked against
    # the same known_hosts)
    one, two = lab.hosts
    app = lab.app("jumpy", home=tmp_path / "control")
    host = f"root@{two.address}:2223"
    serve_on(app, web=[host])
    toml = app.dir / "headway.toml"
    try:
        with second_sshd(lab, two, 2223, f"AuthorizedKeysFile {lab.base / 'authorized_keys'}\n"
                                         f"AllowUsers root@{one.address}\n"
                                         f"SetEnv HEADWAY_HOME={two.home}\n"):
            direct = app.run("servers", "trust", check=False)
            assert direct.returncode != 0 and f"{host}: refused the login" in direct.stdout, \
                direct.stdout
            toml.write_text(toml.read_text().replace(
                "[ssh]\n", f'[ssh]\njump = "root@{one.address}"\n'))
            app.run("servers", "trust")
            known = (app.home / "fleet" / "known_hosts").read_text()
            assert f"[{two.address}]:2223 " in known and f"{one.address} " in known  # both
            check = app.run("servers", "check", "--json", check=False)
        row = json.JSONDecoder().raw_decode(check.stdout)[0][0]
        assert row["reachable"] and row["home"] == str(two.home), row
    finally:
        close_ssh(lab, app)


@contextmanager
def second_sshd(lab: Lab, host: LabHost, port: int, settings: str) -> Iterator[None]:
    """Another sshd on the test host's address and `port`, with these settings besides."""
    config, pidfile = lab.base / f"sshd_{port}", lab.base / f"sshd_{port}.pid"
    config.write_text(f"ListenAddress {host.address}\nPort {port}\n"
                      f"HostKey {host.folder / 'host_key'}\nPidFile {pidfile}\n"
                      "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
                      f"StrictModes no\n{settings}")
    _run(["nsenter", f"--net=/var/run/netns/{host.ns}", "/usr/sbin/sshd", "-f", str(config)])
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), "sshd")
    try:
        yield
    finally:
        _kill(int(pidfile.read_text()))


def serve_on(app: ControlApp, **roles: list[str]) -> None:
    """[servers] of the app's headway.toml: these hosts per role instead of the lab's."""
    toml = app.dir / "headway.toml"
    table = "".join(f"{role} = {json.dumps(hosts)}\n" for role, hosts in roles.items())
    toml.write_text(re.sub(r"\nweb = \[.*\]\n", "\n" + table, toml.read_text()))


def _migrated(app: ControlApp) -> list[tuple[str, int]]:
    """(host, release) of each release command run, from the events of every host: the app
    has no accessories (its data is shared), so once per fleet deploy."""
    events = json.loads(app.run("events", "--json").stdout)
    return sorted((e["host"], e["release"]) for e in events if e["kind"] == "release.command")


def _host_status(host: LabHost, app: str) -> dict[str, Any]:
    """`headway status --json` of `app` on the host, read in its own $HEADWAY_HOME."""
    out = subprocess.run([sys.executable, "-m", "headway", "--app", app, "status", "--json"],
                         env=dict(os.environ, HEADWAY_HOME=str(host.home)), capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    found: dict[str, Any] = json.loads(out.stdout)
    return found


ROLES_PORT = 18082
BOXED_PORT = 18081
BOXED_APP = """import json, os, signal, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = open("VERSION").read().strip()
BODY = json.dumps({"app": "boxed", "version": VERSION}).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args):
        pass


signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
ThreadingHTTPServer((os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"])),
                    Handler).serve_forever()
"""


def _small_image(folder: Path) -> None:
    """The app as a one-layer image on the stand-in base (standard library only, its own
    Containerfile): what is measured is the fleet's build, push and pull, not pip."""
    (folder / "app.py").write_text(BOXED_APP)
    (folder / "requirements.txt").unlink()
    (folder / "Containerfile").write_text(
        "FROM docker.io/library/python:3.11-slim\nWORKDIR /app\nCOPY app.py VERSION ./\n"
        'USER 10001\nCMD ["python3", "app.py"]\n')


def _remove_images(server: str) -> None:
    """This test's images, by id: pulls by digest leave references without a tag."""
    ids = subprocess.run(["podman", "images", "-q", "--filter", f"reference={server}/boxed"],
                         capture_output=True, text=True, check=False).stdout.split()
    if ids:
        subprocess.run(["podman", "rmi", "-f", *set(ids)], capture_output=True, check=False)


def _digest_pulled(output: str, server: str) -> str:
    """The digest a fleet deploy's output names: `image SERVER/boxed@sha256:...`."""
    found = [w for w in output.split() if w.startswith(f"{server}/boxed@sha256:")]
    assert found, output
    return found[0].split("@", 1)[1]


def _pulled_from(log: Path, digest: str, address: str) -> bool:
    return any(f"/v2/boxed/manifests/{digest}" in line and f"{address}:" in line
               for line in log.read_text().splitlines())


def _running_image(host: LabHost) -> str | None:
    """The image id of the newest release's containers of `boxed` on the host."""
    rows = subprocess.run(["podman", "ps", "--format", "{{.ImageID}} {{.Labels}}"],
                          capture_output=True, text=True, check=True).stdout.splitlines()
    found = {int(row.split("headway.release:")[1].split()[0]): row.split()[0] for row in rows
             if f"headway.home:{host.home} " in row and "headway.app:boxed" in row}
    return found[max(found)] if found else None  # the live release's (the previous is warm)


def _destroy_on_hosts(lab: Lab, app: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(lab.hosts)) as pool:
        list(pool.map(lambda host: _destroy_on(host, app), lab.hosts))


def _destroy_on(host: LabHost, app: str) -> None:
    subprocess.run([sys.executable, "-m", "headway", "--app", app, "destroy", "--yes"],
                   env=dict(os.environ, HEADWAY_HOME=str(host.home)),
                   capture_output=True, timeout=120, check=False)
    ids = subprocess.run(["podman", "ps", "-aq", "--filter", f"label=headway.home={host.home}"],
                         capture_output=True, text=True, check=False).stdout.split()
    if ids:
        subprocess.run(["podman", "rm", "-f", "-t", "0", *ids], capture_output=True, check=False)


@pytest.mark.integration
def test_unknown_host_key_is_refused_under_strict(lab: Lab) -> None:
    stranger = lab.app("stranger", replicas=1)  # its own control home: an empty known_hosts
    shipped = sorted((lab.hosts[0].home / "fleet").rglob("*"))
    try:
        check = stranger.run("servers", "check", check=False)
        assert check.returncode == ConfigError.exit_code, check.stderr
        assert f"root@{lab.hosts[0].address}" in check.stderr
        assert "host key is unknown" in check.stderr and "servers trust" in check.stderr
        deploy = stranger.run("deploy", check=False)
        assert deploy.returncode == ConfigError.exit_code, deploy.stderr
        assert "host key is unknown" in deploy.stderr
        assert sorted((lab.hosts[0].home / "fleet").rglob("*")) == shipped  # nothing shipped

        wrong = lab.base / "wrong_key"  # a key no host accepts: said so, with the fix
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)])
        toml = stranger.dir / "headway.toml"
        toml.write_text(toml.read_text().replace(str(lab.key), str(wrong)))
        trust = stranger.run("servers", "trust", check=False)
        assert trust.returncode == ConfigError.exit_code, trust.stderr
        assert f"root@{lab.hosts[0].address}: refused the login" in trust.stderr.replace("\n", " ")
        assert "authorized_keys" in trust.stderr
    finally:
        close_ssh(lab, stranger)


# unit tests: no host needed ------------------------------------------------------------------
CONN = ssh.Connection(known_hosts=Path("/h/fleet/known_hosts"), control_dir=Path("/run/c"),
                      identity=Path("/k/id"), connect_timeout=3)


def test_ssh_argv_is_batch_mode_with_headways_known_hosts_and_quoted_command() -> None:
    host = parse_host("deploy@10.0.0.5:2222")
    argv = CONN.ssh(host, ["headway", "deploy", "it's; rm -rf /"])
    assert argv == [
        "ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", "UserKnownHostsFile=/h/fleet/known_hosts", "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "HashKnownHosts=no", "-o", "ConnectTimeout=3", "-o", "ServerAliveInterval=2",
        "-o", "ServerAliveCountMax=3", "-o", "ControlMaster=auto",
        "-o", "ControlPath=/run/c/%C", "-o", "ControlPersist=60", "-o", "LogLevel=ERROR",
        "-o", "IdentityFile=/k/id", "-o", "IdentitiesOnly=yes", "-p", "2222", "--",
        "deploy@10.0.0.5", "headway deploy 'it'\"'\"'s; rm -rf /'"]
    assert "StrictHostKeyChecking=accept-new" in CONN.ssh(host, ["true"], accept_new=True)


def test_jump_host_goes_through_the_same_known_hosts() -> None:
    conn = ssh.Connection(known_hosts=Path("/kh"), control_dir=Path("/c"),
                          jump=parse_host("bastion.example.com"))
    proxy = next(o for o in conn.ssh(parse_host("10.0.0.5"), ["true"])
                 if o.startswith("ProxyCommand="))
    assert "UserKnownHostsFile=/kh" in proxy and "-W %h:%p" in proxy
    assert proxy.endswith("-- bastion.example.com")
    words = shlex.split(proxy.removeprefix("ProxyCommand="))  # every -o has its value
    assert all(words[n + 1] != "-o" for n, w in enumerate(words) if w == "-o"), words
    assert not any(w.startswith("Control") for w in words)


def test_hosts_parse_batch_and_filter() -> None:
    assert parse_host("10.0.0.6", user="deploy", port=2200) == Host("10.0.0.6", "10.0.0.6",
                                                                     "deploy", 2200)
    hosts = [parse_host(f"h{n}") for n in range(5)]
    assert [len(b) for b in batches(hosts, 2)] == [2, 2, 1]
    assert pick(hosts, ("h3",)) == [hosts[3]]
    with pytest.raises(ConfigError, match="--host nope: not in"):
        pick(hosts, ("nope",))


def test_roles_put_each_process_on_its_hosts() -> None:
    from headway.fleet.hosts import fleet_hosts
    from headway.spec.load import parse_spec

    base = (EXAMPLE / "headway.toml").read_text() + ('[processes.worker]\ncommand = "w"\n'
                                                     '[processes.mailer]\ncommand = "m"\n')
    spec = parse_spec(base + '[servers]\nworker = ["10.0.0.7", "10.0.0.5"]\n'
                      'web = ["10.0.0.5", "10.0.0.6"]\n')
    hosts = fleet_hosts(spec)  # web hosts first; mailer is listed nowhere: on the web hosts
    assert [(h.name, h.processes) for h in hosts] == [
        ("10.0.0.5", ("web", "worker", "mailer")), ("10.0.0.6", ("web", "mailer")),
        ("10.0.0.7", ("worker",))]
    only = spec.running_only(list(hosts[2].processes))
    assert not only.serves_web() and only.processes["worker"].replicas == 1
    assert spec.serves_web()  # the spec itself is left as it was
    with pytest.raises(ConfigError, match=r"servers.web: no host runs the web process"):
        fleet_hosts(parse_spec(base + '[servers]\nworker = ["10.0.0.7"]\n'))


@pytest.mark.parametrize(("code", "stderr", "error", "says"), [
    (255, "Host key verification failed.", ssh.HostKeyRefused, "servers trust"),
    (255, "@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@", ssh.HostKeyRefused,
     "ssh-keygen -R [10.0.0.5]:2222"),
    (255, "deploy@10.0.0.5: Permission denied (publickey).", ssh.LoginRefused,
     "authorized_keys"),
    (255, "ssh: connect to host 10.0.0.5 port 2222: No route to host", ssh.Unreachable,
     "servers check"),
    (4, "error: release 3 failed its health check", ssh.HeadwayError, "release 3 failed"),
])
def test_ssh_failures_name_the_host_and_the_fix(code: int, stderr: str, error: type,
                                                says: str) -> None:
    exc = ssh.failure(parse_host("deploy@10.0.0.5:2222"), CONN, code, stderr, "headway deploy")
    assert isinstance(exc, error) and "deploy@10.0.0.5:2222" in exc.message
    assert says in f"{exc.message} {exc.hint}"
    assert exc.exit_code == {4: 4, 255: exc.exit_code}[code]
    if error is ssh.Unreachable:
        assert exc.exit_code == RuntimeFailure.exit_code


def test_a_host_without_this_headway_is_refused_with_the_fix() -> None:
    from headway.fleet.fleet import installed_problem
    from headway.fleet.remote import build_id

    missing = installed_problem("deploy@h1", {"home": "/srv/hw", "headway": None})
    assert missing is not None and "deploy@h1: Headway is not installed there" in missing.message
    assert missing.hint == "run `headway servers setup`"
    other = installed_problem("deploy@h1", {"home": "/srv/hw", "headway": {
        "version": "0.0.9", "build": "0123456789abcdef"}})
    assert other is not None and other.exit_code == ConfigError.exit_code
    assert "deploy@h1: runs Headway 0.0.9 (build 0123456789abcdef)" in other.message
    assert build_id() in other.message and "servers setup" in str(other.hint)


def test_release_archive_is_reproducible_and_deploys_locally_on_the_host(tmp_path: Path) -> None:
    app = tmp_path / "hello"
    shutil.copytree(EXAMPLE, app)
    (app / "headway.toml").write_text((app / "headway.toml").read_text()
                                      + '\n[servers]\nweb = ["10.0.0.5"]\n[ssh]\nport = 2222\n')
    first = release_archive(app / "headway.toml", app, tmp_path / "home", tmp_path / "a")
    second = release_archive(app / "headway.toml", app, tmp_path / "home", tmp_path / "b")
    assert first[1] == second[1]
    toml = host_config(app / "headway.toml").decode()
    assert "[servers]" not in toml and "[ssh]" not in toml and 'path = "app"' in toml
    assert archive_image(first[0]) is None  # a process release; a container one names its image
    ref = "reg.example.com/hello@sha256:" + "ab" * 32
    boxed = release_archive(app / "headway.toml", app, tmp_path / "home", tmp_path / "c",
                            image=ref)
    assert archive_image(boxed[0]) == ref and boxed[1] != first[1]


def test_dry_run_shows_the_batches_and_auto_runtime_is_refused(tmp_path: Path) -> None:
    app = ControlApp(tmp_path / "hello", tmp_path / "home")
    shutil.copytree(EXAMPLE, app.dir)
    toml = app.dir / "headway.toml"
    toml.write_text(toml.read_text() + '\n[servers]\nweb = ["10.0.0.5", "10.0.0.6", '
                    '"deploy@10.0.0.7:2222"]\n')
    app.set_parallel(2)
    plan = app.run("deploy", "--dry-run").stdout
    assert "batch 1: 10.0.0.5 (web), 10.0.0.6 (web)" in plan, plan
    assert "batch 2: deploy@10.0.0.7:2222 (web)" in plan
    app.configure(release='command = "python3 migrate.py"')  # shared data: migrated once
    plan = app.run("deploy", "--dry-run").stdout
    assert "the release command runs on 10.0.0.5 only" in plan, plan
    assert "batch 1: 10.0.0.5 (web):" in plan
    assert "batch 2: 10.0.0.6 (web), deploy@10.0.0.7:2222 (web)" in plan
    app.configure(accessories__db='type = "postgres"')  # each host's own database: refused
    refused = app.run("deploy", "--dry-run", check=False)
    assert refused.returncode == ConfigError.exit_code, refused.stdout
    assert ("accessories.db: with 3 hosts in [servers] each host would run its own server and "
            "their data would differ") in " ".join(refused.stderr.split()), refused.stderr
    assert "headway secrets set DATABASE_URL" in refused.stderr
    toml.write_text(toml.read_text().replace("[accessories.db]", "").replace(
        'type = "postgres"', ""))
    toml.write_text(toml.read_text().replace('runtime = "process"', 'runtime = "podman"')
                    + '\n[registry]\nserver = "reg.example.com"\n')
    boxed = app.run("deploy", "--dry-run").stdout
    assert "push it to reg.example.com; every host pulls it by digest" in boxed, boxed
    toml.write_text(toml.read_text().replace('runtime = "podman"', 'runtime = "auto"'))
    refused = app.run("deploy", "--dry-run", check=False)  # each host would pick its own
    assert refused.returncode == ConfigError.exit_code
    assert "app.runtime = 'auto'" in refused.stderr and 'runtime = "process"' in refused.stderr


def test_fleet_history_goes_forward_on_deploys_and_back_on_rollback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from headway.fleet import remote

    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path / "home"))
    for sha in ("A", "B", "B", "C"):
        record = remote.mark("hello", "production", sha, current=True)
    assert record["history"] == ["A", "B", "C"] and record["current"] == "C"
    record = remote.mark("hello", "production", "B", current=False, back=True)
    assert record["history"] == ["A", "B"] and record["current"] == "B"
    assert remote.info("hello", "production")["fleet"]["current"] == "B"


def test_env_servers_override_servers_for_that_environment(tmp_path: Path) -> None:
    app = ControlApp(tmp_path / "hello", tmp_path / "home")
    shutil.copytree(EXAMPLE, app.dir)
    toml = app.dir / "headway.toml"
    toml.write_text(toml.read_text() + '\n[servers]\nweb = ["10.0.0.5", "10.0.0.6"]\n'
                    '\n[env.staging]\nLOG_LEVEL = "debug"\n'
                    '\n[env.staging.servers]\nweb = ["deploy@10.0.1.5:2222"]\n'
                    '\n[env.local]\n\n[env.local.servers]\n')
    production = app.run("deploy", "--dry-run").stdout
    assert "batch 1: 10.0.0.5" in production and "10.0.1.5" not in production
    staging = app.run("--env", "staging", "deploy", "--dry-run").stdout
    assert "batch 1: deploy@10.0.1.5:2222" in staging and "10.0.0.5" not in staging
    local = app.run("--env", "local", "servers", "check", check=False)  # an empty table: here
    assert local.returncode == ConfigError.exit_code
    assert "no [servers] (nor [env.local.servers])" in local.stderr
    host = host_config(toml).decode()  # what a host deploys: no hosts of any environment
    assert "servers" not in host and 'LOG_LEVEL = "debug"' in host

    from headway.cli.servers import _has_servers
    assert _has_servers(toml, "staging") and _has_servers(toml, "production")
    assert not _has_servers(toml, "local")


@pytest.mark.parametrize(("extra", "says"), [
    ('web = ["b@@10.0.0.5"]', "env.staging.servers.web: 'b@@10.0.0.5' is not a host"),
    ('web = "10.0.0.5"', "env.staging.servers.web: a list of hosts"),
    ('worker = ["10.0.0.5"]', "env.staging.servers.worker: no [processes.worker]"),
    ('web = ["10.0.0.5", "10.0.0.5"]', "env.staging.servers.web: a host is listed twice"),
])
def test_env_servers_errors_name_the_table(extra: str, says: str) -> None:
    from headway.spec.load import parse_spec

    with pytest.raises(ConfigError, match="headway.toml: ") as caught:
        parse_spec(f"{(EXAMPLE / 'headway.toml').read_text()}\n[env.staging.servers]\n{extra}\n")
    assert says in caught.value.message
    with pytest.raises(ConfigError, match="env.staging.servers: a table of roles"):
        parse_spec(f"{(EXAMPLE / 'headway.toml').read_text()}\n[env.staging]\nservers = 3\n")


class FakeFleet:
    """What fleet/reads.py asks of a Fleet, with canned host answers; a host named `down`
    does not answer."""

    app, env = "hello", "production"

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.hosts = [parse_host(name) for name in answers]
        self.answers, self.asked = answers, []  # type: list[list[str]]

    def each(self, hosts, work):  # type: ignore[no-untyped-def]
        from headway.errors import HeadwayError

        out = {}
        for host in hosts:
            try:
                out[host.name] = work(host)
            except HeadwayError as exc:
                out[host.name] = exc
        return out

    def probe(self, host: Host) -> dict[str, object]:
        if host.name == "down":
            raise ssh.Unreachable("down: cannot be reached over SSH (probing it): timed out")
        return {}

    def headway(self, host, args, *, what, timeout=0, on_line=None):  # type: ignore[no-untyped-def]
        self.asked.append(args)
        for line in self.answers[host.name]:
            if on_line:
                on_line(line)
        return "\n".join(self.answers[host.name])


def test_events_across_hosts_are_merged_by_time_with_a_row_for_a_host_away() -> None:
    from headway.fleet import reads

    fleet = FakeFleet({
        "h1": [('[{"ts": 10, "release": 1, "kind": "deploy", "message": "a"},'
               ' {"ts": 30, "release": 2, "kind": "deploy", "message": "c"}]')],
        "h2": ['[{"ts": 20, "release": 1, "kind": "deploy", "message": "b"}]'], "down": []})
    rows = reads.events(fleet, 2)  # type: ignore[arg-type]
    assert [(r["host"], r["message"]) for r in rows] == [
        ("h2", "b"), ("h1", "c"), ("down", ("down: cannot be reached over SSH (probing it): "
                                   "timed out"))]
    assert rows[-1]["kind"] == "unreachable"
    assert fleet.asked[0] == ["--app", "hello", "events", "--json", "-n", "2"]


def test_logs_across_hosts_tag_each_line_with_its_host() -> None:
    from headway.fleet import reads

    args = reads.log_args(process="web", lines=5, since="10m", grep="GET", release=None,
                          follow=False)
    assert args == ["logs", "--json", "--process", "web", "-n", "5", "--since", "10m",
                    "--grep", "GET"]
    fleet = FakeFleet({"h1": [('{"instance": "web-r1-a", "process": "web", "release": 1, '
                              '"line": "GET /"}')], "h2": ["not json"], "down": []})
    rows: list[dict[str, object]] = []
    failed = reads.logs(fleet, args, rows.append)  # type: ignore[arg-type]
    assert rows == [{"host": "h1", "instance": "web-r1-a", "process": "web", "release": 1,
                     "line": "GET /"}, {"host": "h2", "instance": "-", "line": "not json"}]
    assert list(failed) == ["down"] and isinstance(failed["down"], ssh.Unreachable)


def _fleet_of(records: dict[str, dict[str, object]]) -> object:
    """A Fleet as fleet/rollback.py reads it: hosts and what their probes recorded."""
    from types import SimpleNamespace

    return SimpleNamespace(app="hello", env="production",
                           hosts=[parse_host(n) for n in records],
                           info={n: {"headway": r} for n, r in records.items()})


def test_rollback_release_is_the_artifact_the_hosts_numbered_so() -> None:
    from headway.fleet import rollback

    fleet = _fleet_of({
        "h1": {"active": 3, "fleet": {"releases": {"1": "A", "2": "B", "3": "C"},
                                      "history": ["A", "B", "C"], "at": 2}},
        "h2": {"active": 4, "fleet": {"releases": {"1": "A", "2": "B", "4": "C"},
                                      "history": ["A", "B", "C"], "at": 1}}})
    assert rollback.artifact_of(fleet, 2) == "B"  # type: ignore[arg-type]
    assert rollback.plan(fleet, "B") == {"h1": 2, "h2": 2}  # type: ignore[arg-type]
    assert rollback.plan(fleet, "C") == {"h1": None, "h2": None}  # type: ignore[arg-type]
    assert rollback.previous_artifact(fleet) == "B"  # type: ignore[arg-type]
    assert rollback.artifact_of(fleet, 3) == "C"  # type: ignore[arg-type]
    with pytest.raises(NotFound, match="no host has a release 9"):
        rollback.artifact_of(fleet, 9)  # type: ignore[arg-type]

    fleet.info["h2"]["headway"]["fleet"]["releases"]["3"] = "X"  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"release 3 is not the same code on every host "
                       r"\(h1: artifact C, h2: artifact X\)"):
        rollback.artifact_of(fleet, 3)  # type: ignore[arg-type]
    with pytest.raises(NotFound, match="h2: has no release of artifact D: nothing was rolled"):
        fleet.info["h1"]["headway"]["fleet"]["releases"]["5"] = "D"  # type: ignore[attr-defined]
        rollback.plan(fleet, "D")  # type: ignore[arg-type]


def test_a_podman_app_needs_podman_on_every_host() -> None:
    from types import SimpleNamespace

    from headway.fleet import bootstrap, images

    podman = SimpleNamespace(spec=SimpleNamespace(app=SimpleNamespace(runtime="podman")),
                             hosts=[parse_host("h1")], info={"h1": {"podman": None}})
    assert bootstrap.packages(podman)["podman"] == "podman"  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"h1: lacks podman \(app.runtime = \"podman\"\)"):
        images.check_hosts(podman)  # type: ignore[arg-type]
    process = SimpleNamespace(spec=SimpleNamespace(app=SimpleNamespace(runtime="process")))
    assert "podman" not in bootstrap.packages(process)  # type: ignore[arg-type]


def test_a_container_runtime_with_servers_needs_a_registry_and_one_runtime() -> None:
    from headway.fleet import images
    from headway.spec.load import parse_spec

    base = (EXAMPLE / "headway.toml").read_text() + '\n[servers]\nweb = ["10.0.0.5"]\n'
    boxed = parse_spec(base.replace('runtime = "process"', 'runtime = "podman"'))
    with pytest.raises(ConfigError, match="needs \\[registry\\] server") as caught:
        images.check(boxed, Path("headway.toml"))
    assert "by digest" in caught.value.message and "REGISTRY_PASSWORD" in str(caught.value.hint)
    images.check(parse_spec(base.replace('runtime = "process"', 'runtime = "podman"')
                            + '[registry]\nserver = "reg.example.com"\n'), Path("headway.toml"))
    with pytest.raises(ConfigError, match="registry.verify with \\[servers\\]"):
        images.check(parse_spec(base.replace('runtime = "process"', 'runtime = "podman"')
                                + '[registry]\nserver = "reg.example.com"\nverify = true\n'),
                     Path("headway.toml"))
