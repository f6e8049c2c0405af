"""Is a process (pid, start time) still the one we recorded? Guards against pid reuse. Is a
lock file held (by a live agent)?"""

from __future__ import annotations

import fcntl
from pathlib import Path


def lock_held(path: Path) -> bool:
    """Whether some process holds an flock on `path` (the agent holds agent.lock while alive)."""
    if not path.exists():
        return False
    try:
        with open(path, "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
            return False
    except OSError:
        return False


def proc_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in {"Z", "X"}:
        return None
    return int(fields[19])


def pid_alive(pid: int | None, start: int | None = None) -> bool:
    if not pid:
        return False
    now = proc_start_time(pid)
    return now is not None and (start is None or now == start)
