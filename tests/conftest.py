"""Fixtures: a private $HEADWAY_HOME, a copy of the example app on a free router port, and
the `headway` CLI run as a real subprocess. Teardown destroys what a test deployed, so no
HAProxy, agent or instance outlives it."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from headway.runtime.appuser import BASE, app_root

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "hello"


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A free loopback port, never one this run handed out before (the kernel may offer a
    port again once its first taker has not bound it yet: an app's router and its metrics
    port were once the same). Each pytest-xdist worker has its own band in 10000-19999, below
    Headway's instance ports and the kernel's ephemeral range: no two workers, instances or
    outgoing connections get the same one."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    low = 10000 + 1250 * (worker % 8)
    while True:
        port = random.randrange(low, low + 1250)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port


@dataclass
class App:
    dir: Path
    home: Path
    port: int
    metrics_port: int = 0
    router_metrics_port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def env(self) -> dict[str, str]:
        return dict(os.environ, HEADWAY_HOME=str(self.home))

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "headway", *args], cwd=self.dir,
                              env=self.env(), capture_output=True, text=True, timeout=timeout,
                              check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"headway {' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "headway", *args], cwd=self.dir,
                                env=self.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def deploy_until(self, progress: str) -> subprocess.Popen[str]:
        """Start `headway deploy` and return once its progress prints `progress`."""
        deploy = self.popen("deploy")
        assert deploy.stdout is not None
        for line in deploy.stdout:
            if progress in line:
                return deploy
        raise AssertionError(f"the deploy ended without printing {progress!r}")

    def version(self) -> str:
        return str(httpx.get(self.url, timeout=5).json()["version"])

    def set_version(self, version: str, *, broken: str | None = None) -> None:
        (self.dir / "VERSION").write_text(version + "\n")
        if broken:
            (self.dir / "BROKEN").write_text(broken)
        else:
            (self.dir / "BROKEN").unlink(missing_ok=True)

    def use_strategy(self, strategy: str) -> None:
        path = self.dir / "headway.toml"
        text = path.read_text()
        path.write_text(text.replace('strategy = "blue-green"', f'strategy = "{strategy}"'))

    def configure(self, **sections: str) -> None:
        """Set keys in headway.toml sections (processes__web__health= for
        [processes.web.health]); a key already in the section is replaced."""
        path = self.dir / "headway.toml"
        lines = path.read_text().splitlines()
        for name, body in sections.items():
            header = f"[{name.replace('__', '.')}]"
            if header not in lines:
                lines += ["", header]
            start = lines.index(header) + 1
            end = next((n for n in range(start, len(lines)) if lines[n].startswith("[")),
                       len(lines))
            settings = body.splitlines()
            for n, setting in enumerate(settings):
                if setting.startswith("["):  # a sub-table: the rest is appended as is
                    lines += settings[n:]
                    break
                key = setting.split("=")[0].strip()
                at = next((n for n in range(start, end)
                           if lines[n].split("=")[0].strip() == key), None)
                if at is None:
                    lines.insert(end, setting)
                    end += 1
                else:
                    lines[at] = setting
        path.write_text("\n".join(lines) + "\n")


def write_test_toml(app: App, *, name: str, runtime: str, command: str,
                    deploy: str = 'timeout = "60s"', health: str = "") -> None:
    """A headway.toml for an app a test deploys: its name, runtime and web command, one
    replica checked every 200 ms, and ports of its own on loopback (router, metrics), which
    `app` records. `deploy` and `health`: extra lines of [deploy] and
    [processes.web.health]."""
    app.metrics_port, app.router_metrics_port = free_port(), free_port()
    health = f"{health}\n" if health else ""
    (app.dir / "headway.toml").write_text(f"""[app]
name = "{name}"
runtime = "{runtime}"

[processes.web]
command = {json.dumps(command)}
replicas = 1

[processes.web.health]
interval = "200ms"
{health}
[deploy]
{deploy}

[router]
port = {app.port}
address = "127.0.0.1"

[observe]
metrics_port = {app.metrics_port}
router_metrics_port = {app.router_metrics_port}
""")


@pytest.fixture(scope="session", autouse=True)
def _app_roots_of_gone_homes() -> Iterator[None]:
    """As root, apps run from /var/lib/headway/HOME-HASH (runtime.appuser): once pytest has
    removed a run's homes, their app roots go too."""
    yield
    for owner in BASE.glob("*/home"):
        if not Path(owner.read_text().strip()).exists():
            shutil.rmtree(owner.parent, ignore_errors=True)


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A folder the app's own user may write too (as root, apps run as their own users, and
    pytest's tmp_path is 0700): in /tmp, removed after the test."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="headway-test-"))
    folder.chmod(0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    if not shutil.which("haproxy", path=os.environ.get("PATH", "") + ":/usr/sbin"):
        pytest.fail("HAProxy is not installed: run .ci/run or `apt-get install -y haproxy`")
    folder = tmp_path / "hello"
    shutil.copytree(EXAMPLE, folder)
    port = free_port()
    toml = (folder / "headway.toml").read_text().replace("port = 18080", f"port = {port}")
    (folder / "headway.toml").write_text(toml)
    app = App(folder, tmp_path / "home", port)
    app.metrics_port, app.router_metrics_port = free_port(), free_port()
    app.configure(
        observe=f"metrics_port = {app.metrics_port}\nrouter_metrics_port = {app.router_metrics_port}",
        router='address = "127.0.0.1"',
        processes__web__health='interval = "200ms"\ntimeout = "1s"',
        deploy='timeout = "20s"\ndrain_timeout = "5s"',
    )
    yield app
    app.run("destroy", "--yes", check=False, timeout=60)
    _kill_leftovers(app.home)
    shutil.rmtree(app_root(app.home), ignore_errors=True)  # as root, the apps' files (appuser)


def _kill_leftovers(home: Path) -> None:
    """Whatever a failed test left running under this home: agent, HAProxy, instances."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if cwd.startswith((str(home), str(app_root(home)))) or f"HEADWAY_HOME={home}".encode() in environ:
            try:
                os.kill(int(proc.name), signal.SIGKILL)
            except ProcessLookupError:
                pass
    pidfile = home / "router" / "haproxy.pid"
    if pidfile.exists():
        try:
            os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)
        except (ProcessLookupError, ValueError, IndexError):
            pass


def assert_nowhere(secret: str, home: Path) -> None:
    """A secret's value is in no process's argv (`ps`) and no file under the home."""
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    assert secret not in ps.stdout
    for path in home.rglob("*"):
        if path.is_file() and not path.is_socket():
            assert secret.encode() not in path.read_bytes(), path


def wait_for(predicate, what: str, timeout: float = 15) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def agent_pid(app: App) -> int:
    for proc in os.listdir("/proc"):
        if not proc.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{proc}/cmdline").read_bytes()
            env = Path(f"/proc/{proc}/environ").read_bytes()
        except OSError:
            continue
        if b"headway\0agent" in cmd and f"HEADWAY_HOME={app.home}".encode() in env:
            return int(proc)
    raise AssertionError("no agent running")



@contextmanager
def registry_server(folder: Path, password: str, *, address: str = "127.0.0.1",
                    log: Path | None = None) -> Iterator[str]:
    """A real OCI registry (Debian's docker-registry) on `address`, user `ci` with `password`
    (htpasswd); its "ADDRESS:PORT". `log`: its request log goes there."""
    import warnings

    port = free_port()
    config, users = folder / "registry.yml", folder / "htpasswd"
    with warnings.catch_warnings():  # the registry reads bcrypt only; glibc's crypt makes it
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    salt = crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)  # cost 4: the registry checks it
    users.write_text(f"ci:{crypt.crypt(password, salt)}\n")  # at every request
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {folder}/reg\n"
                      f"http:\n  addr: {address}:{port}\n"
                      f"auth:\n  htpasswd:\n    realm: test\n    path: {users}\n")
    with open(log or os.devnull, "wb") as out:
        proc = subprocess.Popen(["docker-registry", "serve", str(config)],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _answers(f"http://{address}:{port}/v2/"), "docker-registry")
        yield f"{address}:{port}"
    finally:
        proc.kill()
        proc.wait()


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
        return True
    except httpx.HTTPError:
        return False


@contextmanager
def prometheus_server(config: Path, tsdb: Path) -> Iterator[str]:
    """A real Prometheus (Debian's) with this config on a free loopback port, ready; its URL."""
    if not shutil.which("prometheus"):
        pytest.fail("prometheus is not installed: run .ci/run or `apt-get install -y prometheus`")
    port = free_port()
    proc = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tsdb}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
