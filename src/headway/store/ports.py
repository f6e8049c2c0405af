"""Ports, host-wide: every $HEADWAY_HOME on this machine allocates instance ports from one
registry under a file lock (/run/headway/ports.json, or /tmp/headway when /run is not
writable), so two homes never hand out the same port, even before either binds it. The
services an agent serves (metrics) are claimed there too, and checked before a deploy
uses them. Never binds a port for longer than a test bind; never touches another home's
files beyond reading whether it is still alive."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from headway.errors import ConfigError, RuntimeFailure
from headway.store.procs import lock_held


def registry_dir() -> Path:
    """Where the registry lives: $HEADWAY_PORTS_DIR, /run/headway (root), else /tmp/headway."""
    if os.environ.get("HEADWAY_PORTS_DIR"):
        return Path(os.environ["HEADWAY_PORTS_DIR"])
    run = Path("/run")
    return run / "headway" if os.access(run, os.W_OK) else Path("/tmp/headway")


@contextmanager
def _registry() -> Iterator[dict[str, Any]]:
    """The registry, locked host-wide for the duration; written back atomically."""
    where = registry_dir()
    if not where.exists():
        where.mkdir(parents=True, exist_ok=True)
        if str(where).startswith("/tmp/"):
            os.chmod(where, 0o1777)  # shared by every user's homes, like /tmp itself
    lock_path = where / "ports.lock"
    with open(lock_path, "a") as lock:
        if str(where).startswith("/tmp/"):
            os.chmod(lock_path, 0o666) if lock_path.stat().st_uid == os.getuid() else None
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = where / "ports.json"
        try:
            data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        except (OSError, ValueError):
            data = {}  # unreadable: rebuilt from what each home asks next
        before = json.dumps(data, sort_keys=True)
        yield data
        if json.dumps(data, sort_keys=True) != before:
            tmp = path.with_name(f"ports.json.{os.getpid()}")
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
            os.replace(tmp, path)


def _home_alive(home: str) -> bool:
    """A home still exists (its store is there)."""
    return Path(home, "state.db").exists()


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def allocate(home: Path, used: set[int], candidates: Iterable[int]) -> int:
    """A loopback port for an instance of `home`: not in `used` (the home's own instances and
    accessories), not held by another live home, and free to bind now. Recorded as the
    home's, so another home skips it even before it is bound."""
    mine = str(home)
    with _registry() as reg:
        for port in candidates:
            entry = reg.get(str(port))
            if port in used:
                continue
            if entry and entry["home"] != mine and _home_alive(entry["home"]):
                continue
            if not _bindable(port):
                continue
            reg[str(port)] = {"home": mine, "what": "instance", "since": time.time()}
            return port
    raise RuntimeFailure("no free port for an instance in the host's range",
                         hint=f"the registry of used ports is {registry_dir() / 'ports.json'}")


def holder(port: int, home: Path) -> str | None:
    """The other home whose running agent serves `port` (metrics), if any."""
    with _registry() as reg:
        entry = reg.get(str(port))
    if entry and entry.get("what") == "service" and entry["home"] != str(home) \
            and lock_held(Path(entry["home"], "agent.lock")):
        return str(entry["home"])
    return None


def claim_service(home: Path, port: int) -> str | None:
    """Record that `home`'s agent serves `port`; the other home holding it, if any (then
    nothing is recorded)."""
    with _registry() as reg:
        entry = reg.get(str(port))
        if entry and entry["home"] != str(home) and entry.get("what") == "service" \
                and lock_held(Path(entry["home"], "agent.lock")):
            return str(entry["home"])
        reg[str(port)] = {"home": str(home), "what": "service", "since": time.time()}
    return None


def check_service_ports(home: Path, ports: dict[str, int]) -> None:
    """Refuse a config whose agent ports (e.g. {"observe.metrics_port": 9580}) another home's
    agent already serves. Call at config check and before a deploy records [observe]."""
    for key, port in ports.items():
        other = holder(port, home) if port else None
        if other:
            raise ConfigError(f"{key} = {port}: the headway agent of {other} already serves "
                              "this port on this host",
                              hint=f"pick another port for [observe] {key.split('.')[-1]}")


def check_router_port(apps: list[dict[str, Any]], *, app: str, env: str, port: int,
                      hosts: list[str], default: bool) -> None:
    """Refuse routing app/env on `port` when another app or environment of this home is on
    the same port and the Host header could not tell them apart (no hosts on either side,
    a shared host, or both the default). `apps`: Store.apps()."""
    for other in apps:
        if (other["app"], other["env"]) == (app, env) or other["router_port"] != port:
            continue
        theirs = list(other["hosts"] or [])
        shared = sorted({h.lower() for h in hosts} & {h.lower() for h in theirs})
        why = ("neither has [router] hosts" if not hosts and not theirs
               else f"both route host {shared[0]}" if shared
               else "both are the default" if default and other["is_default"] else None)
        if why:
            raise ConfigError(
                f"router.port = {port}: {other['app']} ({other['env']}) already uses this "
                f"port and {why}, so requests could reach the wrong app",
                hint="give each a distinct [router] hosts list, or another [router] port")
