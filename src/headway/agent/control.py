"""Is the agent running for this $HEADWAY_HOME, and start it if not. The agent holds an
exclusive flock on agent.lock for its whole life; that lock is the only truth about it.
The agent starts with a clean environment (`agent_environment`): what the CLI's shell holds
(an `env:` secret source, a registry password) never reaches it, HAProxy or a log."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from headway.errors import RuntimeFailure
from headway.store.procs import lock_held


def agent_running(home: Path) -> bool:
    return lock_held(home / "agent.lock")


def ensure_agent(home: Path) -> None:
    if agent_running(home):
        return
    home.mkdir(parents=True, exist_ok=True)
    log = open(home / "agent.log", "ab")  # noqa: SIM115 - handed to the child
    with log:
        subprocess.Popen([sys.executable, "-m", "headway", "agent"], stdin=subprocess.DEVNULL,
                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                         env=agent_environment(home))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if agent_running(home):
            return
        time.sleep(0.05)
    tail = (home / "agent.log").read_text(errors="replace").splitlines()[-10:]
    raise RuntimeFailure("the headway agent did not start:\n" + "\n".join(tail),
                         hint=f"run `HEADWAY_HOME={home} headway agent` to see why")


# what a long-lived process may inherit from the shell that started it: nothing else
KEEP_VARS = {"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "SHELL",
             "PYTHONPATH", "XDG_RUNTIME_DIR", "XDG_STATE_HOME", "XDG_CONFIG_HOME",
             "HEADWAY_LOG_FORMAT", "HEADWAY_HAPROXY", "HEADWAY_STORE_TIMEOUT",
             "HEADWAY_PORTS_DIR", "CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF"}


def agent_environment(home: Path, source: dict[str, str] | None = None) -> dict[str, str]:
    """The agent's environment: an allow-list of `source` (default: ours) and HEADWAY_HOME."""
    env = os.environ if source is None else source
    kept = {k: v for k, v in env.items() if k in KEEP_VARS or k.startswith("LC_")}
    return kept | {"HEADWAY_HOME": str(home)}


def revive(home: Path) -> bool:
    """Start the agent if this home has apps and no agent runs (it died, or the host
    rebooted). True when it had to be started; the caller says so."""
    if agent_running(home) or not _has_apps(home):
        return False
    ensure_agent(home)
    return True


def _has_apps(home: Path) -> bool:
    path = home / "state.db"
    if not path.exists():
        return False
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)) as db:
            return db.execute("SELECT 1 FROM apps LIMIT 1").fetchone() is not None
    except sqlite3.Error:
        return False  # an unreadable store is the command's to report, not ours


def wait_agent_exit(home: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while agent_running(home) and time.monotonic() < deadline:
        time.sleep(0.05)


def no_healthy_server(status: dict[str, Any]) -> str | None:
    """For `headway status`: why no request can be served (every web instance in rotation is
    failing its health check, or none is in rotation), or None when one can. `status`: the
    dict Context.status() returns (instances with process, router and health)."""
    if not status.get("active_release") or not status.get("routed", True):
        return None  # not live, or a fleet host that runs no web process of the app
    web = [i for i in status.get("instances", []) if i.get("process") == "web"]
    routed = [i for i in web if i.get("router") == "ready"]
    if not routed:
        return f"no healthy server: no instance of {status.get('app')} is in rotation"
    if not any(i.get("health") == "up" for i in routed):
        return (f"no healthy server: every instance of {status.get('app')} in rotation fails "
                f"its health check ({len(routed)} down)")
    return None
