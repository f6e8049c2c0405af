"""Is a process (pid, start time) still the one we recorded? Guards against pid reuse."""

from __future__ import annotations

from pathlib import Path


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
