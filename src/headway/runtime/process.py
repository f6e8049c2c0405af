"""The process runtime: instances are local processes. This side only records what should run
(the store's instances table); the agent's supervisor starts, restarts and stops them. A release
is a snapshot folder with a `.venv` link to its shared, content-keyed virtualenv (and its
node_modules); each [volumes] path in it is a link to a folder outside every release.
One-off commands run here to their end. As root, instances, release and one-off commands run
as the app's own user, from an app root outside $HEADWAY_HOME (see runtime.appuser for who can
read what). Never puts a secret in argv or in a log."""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

from headway.errors import RuntimeFailure
from headway.runtime import appuser
from headway.runtime.appuser import AppUser
from headway.runtime.artifact import install_dependencies, materialize
from headway.runtime.base import KIND_VAR, Output
from headway.runtime.pyinstall import compile_bytecode
from headway.secrets import reveal_env
from headway.spec.models import ProcessSpec, Spec
from headway.store import Instance, Release, Store

PORTS = range(20000, 30000)
_VAR = re.compile(r"\$(\w+)|\$\{(\w+)\}")


def expand(command: str, env: dict[str, str]) -> list[str]:
    """Split a command line (no shell) and expand $VAR / ${VAR} from the instance's env."""
    return [_VAR.sub(lambda m: env.get(m.group(1) or m.group(2), ""), word)
            for word in shlex.split(command)]


def release_env(release: Release, env: dict[str, str]) -> dict[str, str]:
    """A release's environment (no secrets): its variables, Headway's, its virtualenv and
    node_modules/.bin on PATH; NODE_ENV=production for a Node app unless [env] sets it."""
    folder = Path(release.path)
    venv_bin = folder / ".venv" / "bin"
    bins = [str(b) for b in (venv_bin, folder / "node_modules" / ".bin") if b.exists()]
    path = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    base = {"HOST": "127.0.0.1"}
    if (folder / "package.json").exists():
        base["NODE_ENV"] = "production"
    env = dict(base | env, HEADWAY_APP=release.app, HEADWAY_ENV=release.env,
               HEADWAY_RELEASE=str(release.number), PATH=":".join([*bins, path]))
    if venv_bin.exists():
        env["VIRTUAL_ENV"] = str(venv_bin.parent)
    return env


def pinned_secrets(store: Store, release: Release) -> dict[str, str]:
    """The secrets the release was built with, decrypted: for a child's environment only."""
    version = json.loads(release.spec).get("secrets", {}).get("version", 0)
    return reveal_env(store, release.app, release.env, version)


def free_port(store: Store) -> int:
    """A loopback port no instance or accessory has, no other home on the host holds, and
    nothing listens on (allocated host-wide under a lock: store.ports)."""
    from headway.store.ports import allocate

    return allocate(store.home, store.used_ports(), PORTS)


def releases_root(store: Store, app: str, env: str, runtime: str) -> Path:
    """Where a new release's folder goes: for the process runtime as root, the app root that
    the app's user can reach (runtime.appuser); else under $HEADWAY_HOME."""
    if Path(runtime).name == "process":  # the release's recorded runtime (its spec's)
        return appuser.releases_root(store.home, app, env)
    return store.home / "apps" / app / env / "releases"


def volumes_root(store: Store, app: str, env: str) -> Path:
    return appuser.volumes_root(store.home, app, env)


def ensure_volumes(store: Store, release: Release) -> dict[str, Path]:
    """[volumes]: path in the app -> its folder outside every release. A new volume is seeded
    once with what the release's snapshot has at that path (or, as root, taken over from
    where a Headway before app users kept it, under $HEADWAY_HOME)."""
    spec = Spec.of_record(release.spec)
    out = {}
    if spec.volumes:
        appuser.open_app_folder(store.home, release.app, release.env)
    for name, where in sorted(spec.volumes.items()):
        folder = volumes_root(store, release.app, release.env) / name
        before = store.home / "apps" / release.app / release.env / "volumes" / name
        if not folder.exists() and before != folder and before.is_dir():
            shutil.move(before, folder)
        if not folder.exists():
            seed = Path(release.path) / where.strip("/")
            tmp = folder.with_name(f".{name}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            if seed.is_dir() and not seed.is_symlink():
                shutil.copytree(seed, tmp, symlinks=True)
            else:
                tmp.mkdir(parents=True)
            os.replace(tmp, folder)
        out[where.strip("/")] = folder
    return out


def link_volumes(store: Store, release: Release) -> None:
    """In the release folder, each volume's path becomes a link to the volume's folder (as
    root, owned by the app's user: its writable place)."""
    user = appuser.ensure_user(release.app) if appuser.isolated() else None
    for where, folder in ensure_volumes(store, release).items():
        if user and folder.stat().st_uid != user.uid:
            appuser.grant_volume(folder, user)
        path = Path(release.path) / where
        if path.is_symlink() and path.readlink() == folder:
            continue
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.exists():
            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(folder, target_is_directory=True)


def run_command(argv: list[str], *, env: dict[str, str], cwd: str | None = None,
                timeout: float | None = None, output: Output | None = None,
                cleanup: Callable[[], None] | None = None, user: AppUser | None = None) -> int:
    """Run argv to its end (as `user` when given): its output line by line to `output`, or
    (None) on the caller's terminal with its stdin. Past `timeout` (or when the caller is interrupted) it is killed
    after `cleanup` and RuntimeFailure is raised (or the interruption goes on). A signal's
    death is 128 + the signal, as a shell reports it."""
    piped = output is not None
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, start_new_session=piped,
                                stdin=subprocess.DEVNULL if piped else None,
                                stdout=subprocess.PIPE if piped else None,
                                stderr=subprocess.STDOUT if piped else None,
                                user=user.uid if user else None,
                                group=user.gid if user else None,
                                extra_groups=[] if user else None)
    except OSError as exc:
        if output is None:
            raise RuntimeFailure(f"cannot start {argv[0]}: {exc.strerror}",
                                 hint="is it installed in the release (its PATH)?") from exc
        output(f"headway: cannot start {argv[0]}: {exc.strerror}\n")
        return 127
    expired = threading.Event()

    def kill() -> None:
        if cleanup:
            cleanup()
        try:
            os.killpg(proc.pid, signal.SIGKILL) if piped else proc.kill()
        except (ProcessLookupError, PermissionError):
            pass

    def expire() -> None:
        expired.set()
        kill()

    timer = threading.Timer(timeout, expire) if timeout else None
    if timer:
        timer.daemon = True
        timer.start()
    # an interactive command gets the terminal's Ctrl-C; Headway waits for it to end
    previous = None if piped else signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        if proc.stdout is not None and output is not None:
            for raw in proc.stdout:
                output(raw.decode(errors="replace"))
        code = proc.wait()
    except BaseException:  # Ctrl-C of a deploy: its release command does not live on
        kill()
        proc.wait()
        raise
    finally:
        if timer:
            timer.cancel()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if expired.is_set():
        raise RuntimeFailure(f"timed out after {timeout:g}s: killed")
    return 128 - code if code < 0 else code


def log_tail(inst: Instance, lines: int = 20) -> str:
    """The last lines of an instance's log (every runtime writes one)."""
    try:
        with open(inst.log, errors="replace") as f:
            return "".join(deque(f, maxlen=lines))
    except OSError:
        return ""


class ProcessRuntime:
    kind = "process"

    def __init__(self, store: Store) -> None:
        self.store = store

    def prepare(self, source: Path, files: list[Path], release: Release) -> None:
        dest = Path(release.path)
        user = appuser.open_app_folder(self.store.home, release.app, release.env)
        materialize(source, files, dest)
        spec = Spec.of_record(release.spec)
        install_dependencies(dest, spec, appuser.deps_cache(self.store.home))
        if user and (dest / ".venv" / "bin" / "python").exists():  # before volumes are linked
            compile_bytecode(dest / ".venv" / "bin" / "python", dest)
        link_volumes(self.store, release)
        if user:
            appuser.grant_release(dest, user)
            appuser.share_dependencies(dest, appuser.deps_cache(self.store.home))

    def new_instance(self, release: Release, process: str, spec: ProcessSpec,
                     env: dict[str, str]) -> Instance:
        """The instance's record (not yet stored): id, port, argv, env without secrets."""
        inst_id = f"{process}-r{release.number}-{secrets.token_hex(3)}"
        port = free_port(self.store) if process == "web" else 0
        env = release_env(release, env) | {"HEADWAY_INSTANCE": inst_id, KIND_VAR: self.kind}
        if port:
            env["PORT"] = str(port)
        log = self.store.home / "apps" / release.app / release.env / "logs" / f"{inst_id}.log"
        pinned = json.loads(release.spec).get("secrets", {}).get("version", 0)
        return Instance(id=inst_id, app=release.app, env=release.env, release=release.number,
                        process=process, port=port, argv=expand(spec.command, env),
                        cwd=release.path, env_vars=env, log=str(log),
                        stop_timeout=spec.stop_timeout, desired="running", state="pending",
                        secrets=pinned)

    def start(self, release: Release, process: str, spec: ProcessSpec,
              env: dict[str, str]) -> Instance:
        self._reachable(release)
        inst = self.new_instance(release, process, spec, env)
        link_volumes(self.store, release)  # a volume folder removed since the release was built
        Path(inst.log).parent.mkdir(parents=True, exist_ok=True)
        self.store.add_instance(inst)
        return inst

    def _reachable(self, release: Release) -> None:
        """As root, a release folder inside $HEADWAY_HOME (built before apps ran as their own
        users) is closed to the app's user: said plainly rather than a permission error."""
        if appuser.isolated() and Path(release.path).is_relative_to(self.store.home):
            raise RuntimeFailure(
                f"release {release.number} of {release.app} was built inside {self.store.home}, "
                "which the app's own user cannot enter",
                hint="deploy again (`headway deploy --force`): new releases are built where "
                "the app's user can run them")

    def stop(self, inst: Instance, *, remove: bool = True) -> None:
        self.store.set_instance(inst.id, desired="removed" if remove else "stopped")

    def observe(self, inst_id: str) -> Instance | None:
        return self.store.instance(inst_id)

    def spawn_argv(self, inst: Instance) -> list[str]:
        return inst.argv

    def run_once(self, release: Release, argv: list[str], *, env: dict[str, str],
                 timeout: float | None = None, output: Output | None = None,
                 tty: bool = False, instance: Instance | None = None) -> int:
        """In the release's folder (or the instance's) with its dependencies, env and
        secrets; `tty` needs nothing here: the caller's terminal is inherited."""
        del tty
        self._reachable(release)
        if instance is not None:
            cwd, base = instance.cwd, instance.env_vars
        else:
            cwd, base = release.path, release_env(release, env) | {KIND_VAR: self.kind}
            link_volumes(self.store, release)
        full = base | pinned_secrets(self.store, release)
        user = appuser.ensure_user(release.app) if appuser.isolated() else None
        return run_command(argv, env=full, cwd=cwd, timeout=timeout, output=output, user=user)

    def remove(self, target: Release | Instance) -> None:
        """Nothing is left of an ended process, and a release is only its folder."""
