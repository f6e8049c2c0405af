"""Backups of accessories: pg_dump custom format and Redis RDB snapshots, streamed into a
hidden temp file while their SHA-256 is computed, fsynced, then renamed into place, so a
killed or failed backup never replaces or damages a good one. Restores are only ever run by
a command, never as a side effect; each keeps what it replaces."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from headway.accessories.manage import alive, backups_spec, everything, load, lock_name, password
from headway.accessories.servers import DRIVERS, Accessory
from headway.errors import NotFound, RuntimeFailure
from headway.secrets.vault import fsync_dir
from headway.store import Store

EXT = {"postgres": "pgdump", "redis": "rdb"}
CHUNK = 1 << 20


@dataclass
class Backup:
    id: str
    app: str
    env: str
    accessory: str
    type: str
    path: str
    size: int
    sha256: str
    created: float
    release: int | None = None
    reason: str = ""
    verified: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    copy: str | None = None

    def restore_command(self) -> str:
        return f"headway --env {self.env} backup restore {self.accessory} {self.id}"


def _row(row: Any) -> Backup:
    data = dict(row)
    data["details"] = json.loads(data["details"] or "{}")
    return Backup(**data)


def listing(store: Store, app: str, env: str, accessory: str | None = None) -> list[Backup]:
    """Newest first."""
    rows = store.q("SELECT * FROM backups WHERE app=? AND env=? AND accessory LIKE ? "
                   "ORDER BY created DESC", app, env, accessory or "%")
    return [_row(r) for r in rows]


def find(store: Store, app: str, env: str, accessory: str, backup_id: str | None) -> Backup:
    """A backup by id, or the newest of the accessory."""
    for b in listing(store, app, env, accessory):
        if backup_id in {None, b.id}:
            return b
    raise NotFound(f"no backup {backup_id or ''} of {accessory} for {app} ({env})".replace("  ", " "),
                   hint=f"`headway backup list {accessory}` lists them")


def _stream(argv: list[str], env: dict[str, str], dest: Path, what: str) -> tuple[int, str]:
    """Run a dump command into dest atomically; (size, sha256)."""
    tmp = dest.with_name(f".{dest.name}.partial")
    digest, size = hashlib.sha256(), 0
    with tempfile.TemporaryFile() as err:
        try:
            with open(tmp, "wb") as out, subprocess.Popen(
                    argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                    env=os.environ | env) as proc:
                assert proc.stdout
                while chunk := proc.stdout.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                code = proc.wait()
                out.flush()
                os.fsync(out.fileno())
            if code != 0 or size == 0:
                err.seek(0)
                raise RuntimeFailure(f"{what}: {Path(argv[0]).name} exited {code}; no backup "
                                     "was written, earlier ones are untouched",
                                     hint=err.read().decode(errors="replace")[-2000:] or None)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    os.replace(tmp, dest)
    fsync_dir(dest.parent)
    return size, digest.hexdigest()


def _copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = dest.with_name(f".{dest.name}.partial")
    shutil.copyfile(src, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, dest)
    fsync_dir(dest.parent)


def create(store: Store, acc: Accessory, *, reason: str, release: int | None = None) -> Backup:
    spec = backups_spec(store, acc.app, acc.env)
    folder = Path(spec.path or store.home / "backups") / acc.app / acc.env / acc.name
    with store.lock(lock_name(acc), f"backup of {acc.label}", wait=600):
        if not alive(acc):
            raise RuntimeFailure(f"{acc.label} is not running; nothing was backed up",
                                 hint=f"headway accessory restart {acc.name}")
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        for stale in folder.glob(".*.partial"):  # what a killed backup left
            stale.unlink()
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        backup_id, n = f"{acc.name}-{stamp}", 1
        while store.q("SELECT 1 FROM backups WHERE id=?", backup_id):
            n += 1
            backup_id = f"{acc.name}-{stamp}-{n}"
        dest = folder / f"{backup_id}.{EXT[acc.spec.type]}"
        argv, env = DRIVERS[acc.spec.type].dump_argv(acc, password(store, acc))
        size, sha = _stream(argv, env, dest, f"backup of {acc.label}")
        backup = Backup(backup_id, acc.app, acc.env, acc.name, acc.spec.type, str(dest), size,
                        sha, time.time(), release, reason)
        if spec.copy_to:
            copy = Path(spec.copy_to) / acc.app / acc.env / acc.name / dest.name
            try:
                _copy(dest, copy)
                backup.copy = str(copy)
            except OSError as exc:
                store.event(acc.app, acc.env, "backup.copy_failed", f"{backup_id}: copy to "
                            f"{spec.copy_to} failed: {exc.strerror}", release=release)
        _save(store, backup)
    store.event(acc.app, acc.env, "backup.created", f"{backup_id}: {size} bytes ({reason})",
                release=release)
    return backup


def _save(store: Store, b: Backup) -> None:
    row = asdict(b) | {"details": json.dumps(b.details)}
    store.db.execute(f"INSERT OR REPLACE INTO backups({', '.join(row)}) VALUES"
                     f"({', '.join('?' * len(row))})", tuple(row.values()))


def usable_file(b: Backup) -> Path:
    """The backup's file, or its copy, whichever still has the recorded checksum."""
    for candidate in filter(None, [b.path, b.copy]):
        path = Path(candidate)
        if path.exists() and _sha256(path) == b.sha256:
            return path
    raise RuntimeFailure(f"backup {b.id}: neither {b.path}" + (f" nor {b.copy}" if b.copy else "")
                         + " has its recorded checksum; it cannot be used")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def restore(store: Store, b: Backup, *, into: str | None = None) -> str:
    (acc,) = load(store, b.app, b.env, b.accessory)
    source = usable_file(b)
    with store.lock(lock_name(acc), f"restore of {acc.label}", wait=600):
        message = DRIVERS[acc.spec.type].restore(acc, password(store, acc), source, into=into)
    store.event(b.app, b.env, "backup.restored", f"{b.id}: {message}")
    return message


def verify(store: Store, b: Backup) -> Backup:
    """Checksum, then a restore into a throwaway server; records what it held."""
    source = usable_file(b)
    scratch = Path(tempfile.mkdtemp(prefix="headway-verify-"))  # short: sockets go in it
    try:
        b.details = {"tables" if b.type == "postgres" else "keys":
                     DRIVERS[b.type].check(source, scratch)}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    b.verified = time.time()
    _save(store, b)
    store.event(b.app, b.env, "backup.verified", f"{b.id}: restored in a scratch server")
    return b


def kept(backups: list[Backup], *, keep_last: int, keep_daily: int,
         keep_weekly: int) -> set[str]:
    """Ids the retention policy keeps, from backups of one accessory, newest first."""
    keep = {b.id for b in backups[:keep_last]}
    periods: tuple[tuple[int, Callable[[dt.datetime], object]], ...] = (
        (keep_daily, lambda d: d.date()), (keep_weekly, lambda d: d.isocalendar()[:2]))
    for limit, period in periods:
        seen: set[Any] = set()
        for b in backups:
            key = period(dt.datetime.fromtimestamp(b.created, dt.UTC))
            if key not in seen and len(seen) < limit:
                seen.add(key)
                keep.add(b.id)
    return keep


def prune(store: Store, app: str, env: str, accessory: str | None = None) -> list[Backup]:
    spec = backups_spec(store, app, env)
    gone = []
    for acc in load(store, app, env, accessory):
        backups = listing(store, app, env, acc.name)
        keep = kept(backups, keep_last=spec.keep_last, keep_daily=spec.keep_daily,
                    keep_weekly=spec.keep_weekly)
        for b in backups:
            if b.id not in keep:
                for path in filter(None, [b.path, b.copy]):
                    Path(path).unlink(missing_ok=True)
                store.db.execute("DELETE FROM backups WHERE id=?", (b.id,))
                gone.append(b)
    if gone:
        store.event(app, env, "backup.pruned", f"{len(gone)} backups deleted by the retention "
                    "policy: " + ", ".join(b.id for b in gone))
    return gone


def scheduled(store: Store, log: Any) -> None:
    """The agent's round: back up each app's accessories when its schedule says so."""
    for app, env in {(a.app, a.env) for a in everything(store)}:
        every = backups_spec(store, app, env).schedule
        if not every:
            continue
        attempt = f"backup-attempt:{app}:{env}"  # a failing backup is retried next period
        last = [b.created for b in listing(store, app, env) if b.reason == "scheduled"]
        if time.time() - max([*last, float(store.get(attempt) or 0)]) < every:
            continue
        store.put(attempt, str(time.time()))
        for acc in load(store, app, env):
            try:
                b = create(store, acc, reason="scheduled")
                log(f"scheduled backup {b.id} of {acc.label}: {b.size} bytes")
            except Exception as exc:  # noqa: BLE001 - one failure must not stop the others
                store.event(app, env, "backup.failed", f"scheduled backup of {acc.name}: {exc}")
                log(f"scheduled backup of {acc.label} failed: {exc}")
        prune(store, app, env)


def before_release(store: Store, app: str, env: str, names: list[str],
                   release: int) -> list[Backup]:
    return [create(store, acc, reason=f"before release {release}", release=release)
            for name in names for acc in load(store, app, env, name)]


def schema_changes(store: Store, app: str, env: str, after: int, upto: int) -> list[Backup]:
    """Backups taken before the release commands of releases after `after` up to `upto` that
    went live, oldest first: the data as it was before those releases changed it."""
    def went_live(number: int) -> bool:
        rel = store.release(app, env, number)
        return rel is not None and rel.status != "failed"

    return sorted((b for b in listing(store, app, env)
                   if b.reason.startswith("before release") and b.release is not None
                   and after < b.release <= upto and went_live(b.release)),
                  key=lambda b: b.created)
