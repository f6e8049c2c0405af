"""The process runtime: instances are local processes. This side only records what should run
(the store's instances table); the agent's supervisor starts, restarts and stops them. A release
is a snapshot folder with a `.venv` link to its shared, content-keyed virtualenv."""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import socket
from collections import deque
from pathlib import Path

from headway.runtime.artifact import install_dependencies, materialize
from headway.spec.models import ProcessSpec, Spec
from headway.store import Instance, Release, Store

PORTS = range(20000, 30000)
_VAR = re.compile(r"\$(\w+)|\$\{(\w+)\}")


def expand(command: str, env: dict[str, str]) -> list[str]:
    """Split a command line (no shell) and expand $VAR / ${VAR} from the instance's env."""
    return [_VAR.sub(lambda m: env.get(m.group(1) or m.group(2), ""), word)
            for word in shlex.split(command)]


def release_env(release: Release, env: dict[str, str]) -> dict[str, str]:
    """A release's environment (no secrets): its variables, Headway's, and its virtualenv."""
    venv_bin = Path(release.path) / ".venv" / "bin"
    path = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    env = dict({"HOST": "127.0.0.1"} | env, HEADWAY_APP=release.app, HEADWAY_ENV=release.env,
               HEADWAY_RELEASE=str(release.number),
               PATH=f"{venv_bin}:{path}" if venv_bin.exists() else path)
    if venv_bin.exists():
        env["VIRTUAL_ENV"] = str(venv_bin.parent)
    return env


def free_port(store: Store) -> int:
    """A loopback port no instance or accessory has and nothing listens on."""
    used = store.used_ports()
    for port in PORTS:
        if port in used:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port in 20000-29999")


class ProcessRuntime:
    def __init__(self, store: Store) -> None:
        self.store = store

    def prepare(self, source: Path, files: list[Path], release: Release) -> None:
        dest = Path(release.path)
        materialize(source, files, dest)
        spec = Spec.model_validate(json.loads(release.spec)["spec"])
        install_dependencies(dest, spec, self.store.home / "venvs")

    def new_instance(self, release: Release, process: str, spec: ProcessSpec,
                     env: dict[str, str]) -> Instance:
        inst_id = f"{process}-r{release.number}-{secrets.token_hex(3)}"
        port = free_port(self.store) if process == "web" else 0
        app_dir = Path(release.path)
        env = release_env(release, env) | {"HEADWAY_INSTANCE": inst_id}
        if port:
            env["PORT"] = str(port)
        log = self.store.home / "apps" / release.app / release.env / "logs" / f"{inst_id}.log"
        pinned = json.loads(release.spec).get("secrets", {}).get("version", 0)
        return Instance(id=inst_id, app=release.app, env=release.env, release=release.number,
                        process=process, port=port, argv=expand(spec.command, env),
                        cwd=str(app_dir), env_vars=env, log=str(log),
                        stop_timeout=spec.stop_timeout, desired="running", state="pending",
                        secrets=pinned)

    def forget(self, release: Release) -> None:
        """A release's files are about to be deleted: nothing else to clean up here."""

    def start(self, inst: Instance) -> None:
        Path(inst.log).parent.mkdir(parents=True, exist_ok=True)
        self.store.add_instance(inst)

    def stop(self, inst_id: str, *, remove: bool = True) -> None:
        self.store.set_instance(inst_id, desired="removed" if remove else "stopped")

    def observe(self, inst_id: str) -> Instance | None:
        return self.store.instance(inst_id)

    @staticmethod
    def log_tail(inst: Instance, lines: int = 20) -> str:
        try:
            with open(inst.log, errors="replace") as f:
                return "".join(deque(f, maxlen=lines))
        except OSError:
            return ""

