"""Is the agent running for this $HEADWAY_HOME, and start it if not. The agent holds an
exclusive flock on agent.lock for its whole life; that lock is the only truth about it."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

from headway.errors import RuntimeFailure


def agent_running(home: Path) -> bool:
    path = home / "agent.lock"
    if not path.exists():
        return False
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def ensure_agent(home: Path) -> None:
    if agent_running(home):
        return
    home.mkdir(parents=True, exist_ok=True)
    log = open(home / "agent.log", "ab")  # noqa: SIM115 - handed to the child
    with log:
        subprocess.Popen([sys.executable, "-m", "headway", "agent"], stdin=subprocess.DEVNULL,
                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                         env=dict(os.environ, HEADWAY_HOME=str(home)))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if agent_running(home):
            return
        time.sleep(0.05)
    tail = (home / "agent.log").read_text(errors="replace").splitlines()[-10:]
    raise RuntimeFailure("the headway agent did not start:\n" + "\n".join(tail),
                         hint=f"run `HEADWAY_HOME={home} headway agent` to see why")


def wait_agent_exit(home: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while agent_running(home) and time.monotonic() < deadline:
        time.sleep(0.05)
