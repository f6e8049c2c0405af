"""What an interrupted build leaves on disk: a partial release folder (`releases/N` or
`releases/N.tmp`) and a half-built shared virtualenv (`venvs/KEY` without `.complete`, whose
`KEY.lock` no live builder holds; or, from older builds, `venvs/KEY.tmpPID`). Removes only
what no live builder owns (and first stops that builder's orphaned children, e.g. a
`uv pip install` still writing there); never a finished virtualenv or a release that is not
failed or building."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
from pathlib import Path

from headway.store.procs import pid_alive

_TMP = re.compile(r"\.tmp(\d+)(\.txt)?$")


def remove_build(home: Path, release_path: Path, builder_pid: int) -> None:
    """The partial folder of one killed build, and the virtualenv its builder was making."""
    for path in (release_path, release_path.with_name(release_path.name + ".tmp")):
        shutil.rmtree(path, ignore_errors=True)
    for path in (home / "venvs").glob(f"*.tmp{builder_pid}*"):
        m = _TMP.search(path.name)
        if m and int(m.group(1)) == builder_pid:
            _remove(path)
    sweep_unlocked(home)


def sweep_unlocked(home: Path) -> list[Path]:
    """Virtualenvs built in place that never completed and whose lock no builder holds."""
    gone = []
    venvs = home / "venvs"
    for lock in venvs.glob("*.lock") if venvs.is_dir() else []:
        venv = lock.with_suffix("")
        if not venv.is_dir() or (venv / ".complete").exists():
            continue
        with open(lock, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live builder is at work
            if not (venv / ".complete").exists():
                _remove(venv)
                gone.append(venv)
    return gone


def dead_venvs(home: Path) -> list[Path]:
    """Half-built virtualenvs whose builder process is gone."""
    found = []
    for path in (home / "venvs").glob("*.tmp*"):
        m = _TMP.search(path.name)
        if m and not pid_alive(int(m.group(1))):
            found.append(path)
    return found


def sweep(home: Path) -> list[Path]:
    """Remove every half-built virtualenv whose builder is gone (the agent runs this)."""
    gone = dead_venvs(home)
    for path in gone:
        _remove(path)
    return gone + sweep_unlocked(home)


def _orphans(path: Path) -> list[int]:
    """Processes whose command line names `path` (what a killed builder started), as given or
    as it resolves (home/venvs is a link to the app root's deps when apps have own users)."""
    found = []
    needles = {str(path).encode(), str(path.resolve()).encode()}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            if any(needle in cmdline for needle in needles):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def _remove(path: Path) -> None:
    for pid in _orphans(path):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
