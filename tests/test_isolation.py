"""As root, a process-runtime app runs as its own unprivileged user: its instances, its release
command and `headway run` one-offs cannot read $HEADWAY_HOME's master.key or state.db, nor
another app's release, while the app serves as before; the home and the store are private
whatever modes they were given. Real CLI, HAProxy and processes."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from headway.runtime.appuser import app_root, user_name
from headway.store import Store
from tests.conftest import EXAMPLE, App, free_port

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="app users exist only as root")

# What an app's code could try: read the key and the store, write its release and its volume.
PROBE = '''import os, sys
home = os.environ.get("PROBE_HOME") or sys.argv[1]
print("uid", os.getuid(), "gid", os.getgid(), "groups", os.getgroups(), flush=True)
for name in ("master.key", "state.db"):
    try:
        open(os.path.join(home, name), "rb").read()
        print(name, "READ")
    except PermissionError:
        print(name, "denied")
for name, path in (("release", "written.txt"), ("volume", "data/written.txt")):
    try:
        open(path, "w").write("x")
        print(name, "writable")
    except OSError:
        print(name, "read-only")
'''


@pytest.fixture
def isolated(app: App) -> Iterator[App]:
    (app.dir / "probe.py").write_text(PROBE)
    (app.dir / "data").mkdir()
    app.configure(release=f'command = "python3 probe.py {app.home}"', volumes='data = "data"')
    yield app
    app.run("destroy", "--yes", "--volumes", check=False, timeout=60)
    shutil.rmtree(app_root(app.home), ignore_errors=True)


def other_app(app: App, tmp: Path) -> Path:
    """A second app in the same home, on its own router port."""
    folder = tmp / "other"
    shutil.copytree(EXAMPLE, folder)
    toml = (folder / "headway.toml").read_text().replace('name = "hello"', 'name = "other"')
    (folder / "headway.toml").write_text(toml.replace("port = 18080", f"port = {free_port()}")
                                         + f"\n[observe]\nmetrics_port = {app.metrics_port}\n"
                                         f"router_metrics_port = {app.router_metrics_port}\n")
    return folder


def headway(app: App, folder: Path, *args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "headway", *args], cwd=folder, env=app.env(),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def set_secret(app: App) -> None:
    subprocess.run([sys.executable, "-m", "headway", "secrets", "set", "API_TOKEN"], input="tok",
                   cwd=app.dir, env=app.env(), check=True, capture_output=True, text=True)


@pytest.mark.integration
def test_an_app_runs_as_its_own_user_and_cannot_read_the_key_the_store_or_another_app(
        isolated: App, tmp_path: Path) -> None:
    app = isolated
    set_secret(app)
    app.run("deploy")
    user = pwd.getpwnam(user_name("hello"))
    assert user.pw_uid != 0 and user.pw_shell == "/usr/sbin/nologin"
    assert httpx.get(app.url, timeout=5).json()["app"] == "hello"  # it serves as before

    store = Store(app.home)
    release = store.releases("hello", "production")[0]
    log = (app.home / "apps/hello/production/logs/release-1.log").read_text()
    # the release command ran as the app's user, with its group only
    assert f"uid {user.pw_uid} gid {user.pw_gid} groups []" in log
    assert "master.key denied" in log and "state.db denied" in log, log
    assert "release read-only" in log and "volume writable" in log, log
    assert not Path(release.path).is_relative_to(app.home)

    # every instance runs as the app's user
    for inst in store.instances("hello", "production"):
        status = Path(f"/proc/{inst.pid}/status").read_text()
        assert f"Uid:\t{user.pw_uid}\t{user.pw_uid}\t{user.pw_uid}\t{user.pw_uid}" in status

    # one-off commands too: not root, and the key is closed to them
    run = app.run("run", "--", "id", "-u")
    assert run.stdout.strip() == str(user.pw_uid)
    key = (app.home / "master.key").read_text().strip()
    cat = app.run("run", "--", "cat", str(app.home / "master.key"), check=False)
    assert cat.returncode != 0 and "Permission denied" in cat.stdout + cat.stderr
    assert key not in cat.stdout + cat.stderr

    # a second app's release is closed to the first app's user
    other = other_app(app, tmp_path)
    try:
        headway(app, other, "deploy")
        theirs = Store(app.home).releases("other", "production")[0].path
        assert pwd.getpwnam(user_name("other")).pw_uid != user.pw_uid
        denied = app.run("run", "--", "cat", f"{theirs}/app.py", check=False)
        assert denied.returncode != 0 and "Permission denied" in denied.stdout + denied.stderr
    finally:
        headway(app, other, "destroy", "--yes")


@pytest.mark.integration
def test_the_home_and_the_store_are_made_private_whatever_their_modes(app: App) -> None:
    home = app.home
    set_secret(app)
    for path, mode in ((home, 0o755), (home / "state.db", 0o644), (home / "master.key", 0o644)):
        path.chmod(mode)
    app.run("status", check=False)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "state.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "master.key").stat().st_mode) == 0o600
    for extra in ("state.db-wal", "state.db-shm"):
        if (home / extra).exists():
            assert stat.S_IMODE((home / extra).stat().st_mode) == 0o600


def test_a_release_built_inside_the_home_is_refused_with_how_to_rebuild_it(
        tmp_path: Path) -> None:
    """Made before apps ran as their own users: its folder is closed to them."""
    from headway.errors import RuntimeFailure
    from headway.runtime.process import ProcessRuntime
    from headway.spec.models import ProcessSpec
    from headway.store import Release

    store = Store(tmp_path / "home")
    old = Release("hello", "production", 1, "active", "d",
                  str(tmp_path / "home/apps/hello/production/releases/1"), "{}", 0.0)
    with pytest.raises(RuntimeFailure) as err:
        ProcessRuntime(store).start(old, "web", ProcessSpec(command="python3 app.py"), {})
    assert "cannot enter" in err.value.message and "--force" in (err.value.hint or "")
    assert not store.instances("hello", "production")
