"""Automatic copies of the store: taken with SQLite's online backup API (a consistent copy
while the agent and commands keep writing) before each deploy and every hour, the newest few
kept. Restoring one is always a person's decision (`headway doctor` says how), never automatic.
Never copies anything but state.db."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from headway.store.sqlite import store_error

KEEP = {"deploy": 5, "hourly": 24, "manual": 5}
HOURLY = 3600.0


def folder(home: Path) -> Path:
    return home / "store-backups"


def listing(home: Path) -> list[Path]:
    """Copies of the store, newest first."""
    where = folder(home)
    if not where.is_dir():
        return []
    return sorted(where.glob("state-*.db"), key=lambda p: p.stat().st_mtime, reverse=True)


def take(db: sqlite3.Connection, home: Path, reason: str) -> Path:
    """Copy the store behind `db` to store-backups/state-<time>-<reason>.db; prune old copies
    taken for the same reason."""
    where = folder(home)
    now = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + f".{int(now * 1e6) % 10**6:06d}"
    dest = where / f"state-{stamp}-{reason}.db"
    tmp = dest.with_name(dest.name + ".tmp")
    try:
        where.mkdir(mode=0o700, exist_ok=True)
        target = sqlite3.connect(tmp)
        try:
            db.backup(target)
        finally:
            target.close()
        os.chmod(tmp, 0o600)
        os.replace(tmp, dest)
    except (sqlite3.Error, OSError) as exc:
        tmp.unlink(missing_ok=True)
        raise store_error(dest, exc) from exc
    _prune(home, reason)
    return dest


def due(home: Path, *, every: float = HOURLY) -> bool:
    """True when the newest copy is older than `every` (or there is none)."""
    copies = listing(home)
    return not copies or time.time() - copies[0].stat().st_mtime > every


def _prune(home: Path, reason: str) -> None:
    mine = [p for p in listing(home) if p.stem.endswith(f"-{reason}")]
    for old in mine[KEEP.get(reason, 5):]:
        old.unlink(missing_ok=True)


def restore_steps(home: Path, copy: Path) -> list[str]:
    """What a person runs to put `copy` back in place of the store (the current file is kept)."""
    db = home / "state.db"
    return [
        f"stop the agent: kill $(cat {home / 'agent.pid'})",
        f"keep the damaged store: mv {db} {db}.damaged; rm -f {db}-wal {db}-shm",
        f"put the copy back: cp {copy} {db} && chmod 600 {db}",
        ("run any headway command (e.g. `headway status`): it starts the agent again, which "
         "re-adopts the running instances"),
    ]
