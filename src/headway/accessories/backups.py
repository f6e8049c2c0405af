"""Backups of accessories and volumes: pg_dump custom format, Redis RDB snapshots and gzip tar
archives of [volumes] folders (accessories/archives.py), streamed into a hidden temp file
while their SHA-256 is computed, fsynced, then renamed into place, so a killed or failed
backup never replaces or damages a good one. All are recorded alike in the store's backups
table (a volume's `type` is "volume"). Restores are only ever run by a command, never as a
side effect; each checks the checksum first and keeps what it replaces."""

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
from functools import partial
from pathlib import Path
from typing import Any

from headway.accessories import archives
from headway.accessories.manage import alive, backups_spec, everything, load, lock_name, password
from headway.accessories.servers import DRIVERS, Accessory
from headway.errors import ConfigError, NotFound, RuntimeFailure
from headway.runtime.process import volumes_root
from headway.secrets.vault import fsync_dir
from headway.store import Store

EXT = {"postgres": "pgdump", "redis": "rdb", "volume": archives.EXT}
VOLUME = "volume"
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
    """A backup by id, or the newest of the accessory or volume."""
    found = listing(store, app, env, accessory)
    if backup_id is None and len({b.type == VOLUME for b in found}) > 1:
        raise ConfigError(f"{accessory} is both an accessory and a volume of {app} ({env}): "
                          "name the backup", hint=f"`headway backup list {accessory}` lists them")
    for b in found:
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
        dest = _destination(store, folder, acc.name, acc.spec.type)
        argv, env = DRIVERS[acc.spec.type].dump_argv(acc, password(store, acc))
        size, sha = _stream(argv, env, dest, f"backup of {acc.label}")
        backup = Backup(dest.name.split(".")[0], acc.app, acc.env, acc.name, acc.spec.type,
                        str(dest), size, sha, time.time(), release, reason)
        _keep(store, backup, spec.copy_to)
    return backup


def _destination(store: Store, folder: Path, name: str, kind: str) -> Path:
    """A new backup's file in folder, named by a fresh id (NAME-YYYYmmdd-HHMMSS[-n])."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    for stale in folder.glob(".*.partial"):  # what a killed backup left
        stale.unlink()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    backup_id, n = f"{name}-{stamp}", 1
    while store.q("SELECT 1 FROM backups WHERE id=?", backup_id):
        n += 1
        backup_id = f"{name}-{stamp}-{n}"
    return folder / f"{backup_id}.{EXT[kind]}"


def _keep(store: Store, backup: Backup, copy_to: str | None) -> None:
    """Copy the new backup to copy_to (a failed copy is an event, not a failure), record it."""
    dest = Path(backup.path)
    if copy_to:
        copy = Path(copy_to) / backup.app / backup.env / backup.accessory / dest.name
        try:
            _copy(dest, copy)
            backup.copy = str(copy)
        except OSError as exc:
            store.event(backup.app, backup.env, "backup.copy_failed", f"{backup.id}: copy to "
                        f"{copy_to} failed: {exc.strerror}", release=backup.release)
    _save(store, backup)
    store.event(backup.app, backup.env, "backup.created", f"{backup.id}: {backup.size} bytes "
                f"({backup.reason})", release=backup.release)


def volume_names(store: Store, app: str, env: str) -> list[str]:
    """The app's volumes that exist (a restore's leftovers are hidden folders beside them)."""
    root = volumes_root(store, app, env)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _volume_lock(app: str, env: str, name: str) -> str:
    return f"volume:{app}:{env}:{name}"


def create_volume(store: Store, app: str, env: str, name: str, *, reason: str,
                  release: int | None = None) -> Backup:
    """A gzip tar of the volume's folder, beside the accessories' backups."""
    spec = backups_spec(store, app, env)
    live = volumes_root(store, app, env) / name
    with store.lock(_volume_lock(app, env, name), f"backup of volume {name}", wait=600):
        if not live.is_dir():
            raise NotFound(f"{app} ({env}) has no volume {name!r} (no folder {live})",
                           hint="a deploy creates the volumes of [volumes]")
        folder = Path(spec.path or store.home / "backups") / app / env / name
        dest = _destination(store, folder, name, VOLUME)
        size, sha = archives.write(live, dest)
        backup = Backup(dest.name.split(".")[0], app, env, name, VOLUME, str(dest), size, sha,
                        time.time(), release, reason)
        _keep(store, backup, spec.copy_to)
    return backup


def create_all(store: Store, app: str, env: str, name: str | None = None, *,
               reason: str) -> list[Backup]:
    """Back up the accessory or volume called name (default: every accessory, then every
    volume)."""
    accessories = [a for a in load(store, app, env) if name in {None, a.name}]
    volumes = [v for v in volume_names(store, app, env) if name in {None, v}]
    if name is not None and not accessories and not volumes:
        raise NotFound(f"{app} ({env}) has no accessory or volume {name!r}",
                       hint="accessories: " + (", ".join(a.name for a in load(store, app, env))
                                               or "none") + "; volumes: "
                       + (", ".join(volume_names(store, app, env)) or "none"))
    return [*(create(store, acc, reason=reason) for acc in accessories),
            *(create_volume(store, app, env, v, reason=reason) for v in volumes)]


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
    if b.type == VOLUME:
        return _restore_volume(store, b, into=into)
    (acc,) = load(store, b.app, b.env, b.accessory)
    source = usable_file(b)
    with store.lock(lock_name(acc), f"restore of {acc.label}", wait=600):
        message = DRIVERS[acc.spec.type].restore(acc, password(store, acc), source, into=into)
    store.event(b.app, b.env, "backup.restored", f"{b.id}: {message}")
    return message


def _restore_volume(store: Store, b: Backup, *, into: str | None) -> str:
    """Checksum, every member checked, extracted into a fresh folder beside the volume (same
    file system), then swapped in by rename; the replaced folder is kept beside it."""
    source = usable_file(b)
    live = volumes_root(store, b.app, b.env) / b.accessory
    with store.lock(_volume_lock(b.app, b.env, b.accessory), f"restore of volume "
                    f"{b.accessory}", wait=600):
        if into:
            target = Path(into).absolute()
            if target.exists():
                raise ConfigError(f"--into {into}: it exists; name a new folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            got = archives.extract(source, target, owner=None)
            return f"volume {b.accessory}: backup {b.id} extracted into {target} " \
                   f"({got.files} files); the volume is unchanged"
        stamp, n = time.strftime("%Y%m%d-%H%M%S", time.gmtime()), 1
        fresh = live.with_name(f".{live.name}.restoring-{b.id}")
        kept = live.with_name(f".{live.name}.replaced-{stamp}")
        while kept.exists():
            n += 1
            kept = live.with_name(f".{live.name}.replaced-{stamp}-{n}")
        shutil.rmtree(fresh, ignore_errors=True)  # what a killed restore left
        live.parent.mkdir(parents=True, exist_ok=True)
        owner = (live.stat().st_uid, live.stat().st_gid) if live.exists() else None
        got = archives.extract(source, fresh, owner=owner)
        try:
            archives.swap_in(fresh, live, kept)
        except OSError as exc:
            shutil.rmtree(fresh, ignore_errors=True)
            raise RuntimeFailure(f"volume {b.accessory}: swapping the restored folder in "
                                 f"failed ({exc}); {live} still holds its data") from exc
    message = f"volume {b.accessory} restored from backup {b.id} ({got.files} files, " \
              f"{got.bytes} bytes)" + (f"; the replaced files are kept in {kept}"
                                       if kept.exists() else "")
    store.event(b.app, b.env, "backup.restored", f"{b.id}: {message}")
    return message


def verify(store: Store, b: Backup) -> Backup:
    """Checksum, then a restore into a throwaway server (a volume: every archive member
    checked as a restore would); records what it held."""
    source = usable_file(b)
    scratch = Path(tempfile.mkdtemp(prefix="headway-verify-"))  # short: sockets go in it
    try:
        if b.type == VOLUME:
            got = archives.check(source, scratch)
            b.details = {"contents": {"files": got.files, "folders": got.folders,
                                      "links": got.links, "bytes": got.bytes}}
        else:
            b.details = {"tables" if b.type == "postgres" else "keys":
                         DRIVERS[b.type].check(source, scratch)}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    b.verified = time.time()
    _save(store, b)
    store.event(b.app, b.env, "backup.verified", f"{b.id}: " + (
        "every member checked" if b.type == VOLUME else "restored in a scratch server"))
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
    names = [a.name for a in load(store, app, env) if accessory in {None, a.name}]
    names += [v for v in {b.accessory for b in listing(store, app, env, accessory)
                          if b.type == VOLUME} if v not in names]
    for name in sorted(names):
        backups = listing(store, app, env, name)
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
    """The agent's round: back up each app's accessories and volumes when its schedule says
    so."""
    for app, env in {(a.app, a.env) for a in everything(store)} | _with_volumes(store):
        every = backups_spec(store, app, env).schedule
        if not every:
            continue
        attempt = f"backup-attempt:{app}:{env}"  # a failing backup is retried next period
        last = [b.created for b in listing(store, app, env) if b.reason == "scheduled"]
        if time.time() - max([*last, float(store.get(attempt) or 0)]) < every:
            continue
        store.put(attempt, str(time.time()))
        jobs: list[tuple[str, Callable[[], Backup]]] = [
            (acc.label, partial(create, store, acc, reason="scheduled"))
            for acc in load(store, app, env)]
        jobs += [(f"volume {v} of {app} ({env})",
                  partial(create_volume, store, app, env, v, reason="scheduled"))
                 for v in volume_names(store, app, env)]
        for label, job in jobs:
            try:
                b = job()
                log(f"scheduled backup {b.id} of {label}: {b.size} bytes")
            except Exception as exc:  # noqa: BLE001 - one failure must not stop the others
                store.event(app, env, "backup.failed", f"scheduled backup of {label}: {exc}")
                log(f"scheduled backup of {label} failed: {exc}")
        prune(store, app, env)


def _with_volumes(store: Store) -> set[tuple[str, str]]:
    """(app, env) of every deployed app environment that has a volume."""
    return {(r["app"], r["env"]) for r in store.apps()
            if volume_names(store, r["app"], r["env"])}


def before_release(store: Store, app: str, env: str, names: list[str],
                   release: int) -> list[Backup]:
    """Backups of the accessories and volumes named (the spec has checked the names; a volume
    not yet created has nothing to lose), accessories first."""
    accessories = {a.name: a for a in load(store, app, env)}
    volumes = set(volume_names(store, app, env))
    reason = f"before release {release}"
    taken = [create(store, accessories[n], reason=reason, release=release)
             for n in names if n in accessories]
    return taken + [create_volume(store, app, env, n, reason=reason, release=release)
                    for n in names if n in volumes and n not in accessories]


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
