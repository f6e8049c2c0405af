"""The one place SQLite is opened: a connection whose every statement turns sqlite3's errors
(locked for too long, disk full, a corrupted or unreadable file) into a StoreError that names
the store file and says what to do, raised `from` the original. Never retries by itself: the
busy timeout bounds the wait, callers (the agent's loop) decide whether to try again."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from headway.errors import StoreError

DEFAULT_TIMEOUT = 10.0  # seconds a command waits for another process's write lock


def busy_timeout() -> float:
    """How long a statement waits for a write lock held elsewhere ($HEADWAY_STORE_TIMEOUT)."""
    try:
        return max(0.0, float(os.environ.get("HEADWAY_STORE_TIMEOUT", DEFAULT_TIMEOUT)))
    except ValueError:
        return DEFAULT_TIMEOUT


def store_error(path: Path, exc: BaseException, *, timeout: float | None = None) -> StoreError:
    """A user-facing error for a failed store operation on `path`."""
    text = str(exc).lower()
    doctor = "`headway doctor` checks the store and says how to restore its automatic copy"
    if "locked" in text or "busy" in text:
        waited = f" (waited {timeout:g}s)" if timeout is not None else ""
        return StoreError(f"the store {path} is locked by another process{waited}",
                          hint="another headway command or the agent holds a write lock; "
                          "try again, or find it with `fuser " + str(path) + "`")
    if "full" in text or getattr(exc, "errno", None) == 28:
        return StoreError(f"the store {path}: the disk is full",
                          hint=f"free space on the file system of {path.parent}")
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return StoreError(f"the store {path} is corrupted ({exc})", hint=doctor)
    if "readonly" in text or "unable to open" in text or isinstance(exc, PermissionError):
        return StoreError(f"the store {path} cannot be opened for writing ({exc})",
                          hint=f"check the owner and mode of {path} and {path.parent}; {doctor}")
    return StoreError(f"the store {path}: {exc}", hint=doctor)


class Connection(sqlite3.Connection):
    """sqlite3.Connection whose statements raise StoreError instead of sqlite3.Error."""

    path: Path = Path("state.db")
    wait: float = DEFAULT_TIMEOUT

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.Error as exc:
            raise store_error(self.path, exc, timeout=self.wait) from exc

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:
        try:
            return super().executemany(sql, parameters)
        except sqlite3.Error as exc:
            raise store_error(self.path, exc, timeout=self.wait) from exc

    def executescript(self, script: str, /) -> sqlite3.Cursor:
        try:
            return super().executescript(script)
        except sqlite3.Error as exc:
            raise store_error(self.path, exc, timeout=self.wait) from exc


def connect(path: Path, *, timeout: float | None = None) -> Connection:
    """Open (creating) the store file in autocommit mode; writes go through BEGIN IMMEDIATE."""
    wait = busy_timeout() if timeout is None else timeout
    try:
        db = sqlite3.connect(path, timeout=wait, isolation_level=None, factory=Connection)
    except sqlite3.Error as exc:
        raise store_error(path, exc) from exc
    assert isinstance(db, Connection)
    db.path, db.wait = path, wait
    return db
