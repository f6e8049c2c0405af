"""Who a process-runtime app's processes run as, and where the files they may touch live.

When Headway runs as root (euid 0, and only then) every app gets a system user, `hw-APP`
(`useradd --system`, no home, nologin shell, its own group; a name that is long or not a
plain user name gets a hash suffix, within 32 characters), made once and reused by every
environment and home of the host. A real user rather than a bare uid from a range: the
system keeps uids unique across homes and other tools, `ps` and `ls` say whose a process or
file is, and Headway tracks nothing. Its instances, release commands and one-off commands run
as that user with that group alone. The user cannot read $HEADWAY_HOME: the home is root's
and 0700 (state.db, its copies, master.key, logs, the router, accessories' data), and so
are the folders above root's default home (/root). What an app runs from therefore lives
outside the home, in an *app root* per home, /var/lib/headway/NAME-HASH (HASH: of the home's
path; its `home` file names it), 0711 so nobody lists it:

    APP/                  root:hw-APP 0750  another app's user cannot enter it
      ENV/releases/N      root:hw-APP, group-readable, never writable: releases are immutable
      ENV/volumes/NAME    owned by hw-APP: the app's writable places
    deps/                 shared virtualenvs and node_modules, readable by every app user:
                          dependencies only (keyed by content), never an app's code or secrets
The home keeps links to them where they were before (apps/APP/ENV/releases and volumes,
venvs), for root and the operator: the apps' users cannot follow them into the home.

Not root: nothing changes (apps run as Headway's own user, files stay under the home).
Containers are untouched: podman runs them from images, with only their volumes mounted.
Never gives an app user a capability, a writable release, or a path into $HEADWAY_HOME."""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from headway.errors import HeadwayError, RuntimeFailure
from headway.runner import run

BASE = Path("/var/lib/headway")  # where app roots live when Headway runs as root
PREFIX = "hw-"
MAX_NAME = 32  # useradd's limit on Debian
_PLAIN = re.compile(r"[a-z_][a-z0-9_-]*")


@dataclass(frozen=True)
class AppUser:
    name: str
    uid: int
    gid: int


def isolated() -> bool:
    """Apps run as their own users: only when Headway itself runs as root."""
    return os.geteuid() == 0


def user_name(app: str) -> str:
    """hw-APP; with a hash of the app's name when APP is long or not a plain user name."""
    name = PREFIX + app
    if _PLAIN.fullmatch(app) and len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(app.encode()).hexdigest()[:8]
    stem = re.sub(r"[^a-z0-9_-]+", "-", app.lower()).strip("-")
    return f"{PREFIX}{stem[:MAX_NAME - len(PREFIX) - 9]}-{digest}".replace("--", "-")


def ensure_user(app: str) -> AppUser:
    """The app's system user, created the first time (useradd; another command creating it
    at the same moment is fine)."""
    name = user_name(app)
    if not _exists(name):
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        try:
            run([useradd, "--system", "--user-group", "--no-create-home", "--home-dir",
                 "/nonexistent", "--shell", "/usr/sbin/nologin", "--comment",
                 f"Headway app {app}"[:60], name], what=f"useradd {name}")
        except HeadwayError as exc:
            if not _exists(name):  # else another command made it at the same moment
                raise RuntimeFailure(f"cannot create the user {name} for app {app}: "
                                     f"{exc.message}", hint="as root, Headway runs each app "
                                     "as its own user; check that useradd works") from exc
    entry = pwd.getpwnam(name)
    return AppUser(name, entry.pw_uid, entry.pw_gid)


def _exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def popen_user(app: str) -> dict[str, object]:
    """subprocess.Popen's arguments that run a child as the app's user (none unless root)."""
    if not isolated():
        return {}
    user = ensure_user(app)
    return {"user": user.uid, "group": user.gid, "extra_groups": []}


# where things live --------------------------------------------------------------------------
def app_root(home: Path) -> Path:
    """The folder outside $HEADWAY_HOME that holds what this home's apps run from."""
    digest = hashlib.sha256(str(home).encode()).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", home.name)[:40]
    return BASE / f"{name}-{digest}"


def app_folder(home: Path, app: str) -> Path:
    return app_root(home) / app if isolated() else home / "apps" / app


def releases_root(home: Path, app: str, env: str) -> Path:
    return app_folder(home, app) / env / "releases"


def volumes_root(home: Path, app: str, env: str) -> Path:
    return app_folder(home, app) / env / "volumes"


def deps_cache(home: Path) -> Path:
    """Shared virtualenvs and node_modules."""
    return app_root(home) / "deps" if isolated() else home / "venvs"


# who may read what --------------------------------------------------------------------------
def open_app_folder(home: Path, app: str, env: str) -> AppUser | None:
    """The app root (0711) and the app's folders (root:hw-APP 0750) made, the user returned.
    Where a Headway without app users kept them, under $HEADWAY_HOME (apps/APP/ENV/releases
    and volumes, venvs), links lead to them, for root and the operator only."""
    if not isolated():
        return None
    user = ensure_user(app)
    root = app_root(home)
    env_dir = root / app / env
    for path, mode, gid in ((BASE, 0o711, 0), (root, 0o711, 0), (root / "deps", 0o711, 0),
                            (root / app, 0o750, user.gid), (env_dir, 0o750, user.gid),
                            (env_dir / "releases", 0o750, user.gid),
                            (env_dir / "volumes", 0o750, user.gid)):
        path.mkdir(parents=True, exist_ok=True)
        if path.stat().st_gid != gid or stat.S_IMODE(path.stat().st_mode) != mode:
            os.chown(path, 0, gid)
            os.chmod(path, mode)
    owner = root / "home"  # whose app root this is: an operator (or a test run) can tell
    if not owner.exists():
        owner.write_text(f"{home}\n")
        owner.chmod(0o600)
    for link, target in ((home / "apps" / app / env / "releases", env_dir / "releases"),
                         (home / "apps" / app / env / "volumes", env_dir / "volumes"),
                         (home / "venvs", root / "deps")):
        _link(link, target)
    return user


def _link(link: Path, target: Path) -> None:
    """`link` -> `target`, unless something (an older Headway's folder) is there already."""
    if link.is_symlink() or link.exists():
        return
    link.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        link.symlink_to(target, target_is_directory=True)
    except FileExistsError:
        pass


def grant_release(folder: Path, user: AppUser) -> None:
    """The release folder readable by the app's group, writable by nobody but root; links
    (to shared dependencies, to volumes) are left as they are."""
    for path in _walk(folder):
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            continue
        os.chown(path, 0, user.gid)
        mode = stat.S_IMODE(st.st_mode) & 0o755 | 0o040
        if stat.S_ISDIR(st.st_mode) or st.st_mode & 0o100:
            mode |= 0o010
        os.chmod(path, mode & ~0o007)


def grant_volume(folder: Path, user: AppUser) -> None:
    """A volume belongs to the app's user: its writable place."""
    for path in _walk(folder):
        os.lchown(path, user.uid, user.gid)


def readable_once(folder: Path) -> None:
    """Shared dependencies (a virtualenv, node_modules) readable and runnable by every app
    user whatever umask built them, and the folders above them searchable: once per folder
    (marked), since a shared one is used by many releases."""
    mark = folder / ".headway-readable"
    if not isolated() or mark.exists():
        return
    for path in _walk(folder):
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            continue
        mode = stat.S_IMODE(st.st_mode) | 0o044
        if stat.S_ISDIR(st.st_mode) or st.st_mode & 0o100:
            mode |= 0o011
        if mode != stat.S_IMODE(st.st_mode):
            os.chmod(path, mode)
    for parent in folder.parents:
        if parent == BASE or BASE not in parent.parents:
            break
        os.chmod(parent, stat.S_IMODE(parent.stat().st_mode) | 0o011)
    mark.touch()


def share_dependencies(folder: Path, deps: Path) -> None:
    """What the release folder links to in the shared dependencies (its virtualenv, its
    node_modules, a tool such as bun) made readable by the app's user."""
    modules = folder / "node_modules"
    bins = modules / ".bin"
    links = [folder / ".venv", modules, *(bins.iterdir() if bins.is_dir() else ())]
    tops = set()
    for link in links:
        if not link.is_symlink():
            continue
        real = link.resolve()
        if real.is_relative_to(deps.resolve()):
            parts = real.relative_to(deps.resolve()).parts
            tops.add(deps.resolve().joinpath(*parts[:3 if parts[0] == "node" else 1]))
    for top in sorted(tops):
        readable_once(top)


def reachable(path: str) -> bool:
    """Can any user run `path`: every folder above it searchable by others, it runnable."""
    real = Path(os.path.realpath(path))
    try:
        if not real.stat().st_mode & 0o001:
            return False
        return all(parent.stat().st_mode & 0o001 for parent in real.parents)
    except OSError:
        return False


def _walk(folder: Path) -> list[Path]:
    out = [folder]
    for root, dirs, files in os.walk(folder):
        out += [Path(root, name) for name in (*dirs, *files)]
    return out

