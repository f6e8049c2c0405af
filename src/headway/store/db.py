"""The store: one SQLite file (WAL) shared by the CLI and the agent. The CLI writes what it
wants (releases, desired instance state, router state); the agent reads it and acts. Plain SQL,
no ORM; every write is one short transaction so a kill -9 never leaves a row half-written.
Every open makes the home 0700 and the store's files (state.db, its -wal and -shm, the
store-backups folder) root's, 0600, whatever modes they had: an app's user must never read
them (runtime.appuser)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from headway.errors import LockedError
from headway.store import leftovers, snapshots
from headway.store.procs import pid_alive, proc_start_time
from headway.store.sqlite import connect, store_error

SCHEMA = """
CREATE TABLE IF NOT EXISTS apps(app TEXT, env TEXT, router_port INT, router_address TEXT,
  hosts TEXT, is_default INT, health_path TEXT, health_interval REAL, created REAL,
  health_expect TEXT DEFAULT '2xx', PRIMARY KEY(app, env));
CREATE TABLE IF NOT EXISTS releases(app TEXT, env TEXT, number INT, status TEXT, digest TEXT,
  path TEXT, spec TEXT, created REAL, deployed REAL, warm_until REAL, failure TEXT,
  PRIMARY KEY(app, env, number));
CREATE TABLE IF NOT EXISTS instances(id TEXT PRIMARY KEY, app TEXT, env TEXT, release INT,
  process TEXT, port INT, argv TEXT, cwd TEXT, env_vars TEXT, log TEXT, stop_timeout REAL,
  desired TEXT, state TEXT, pid INT, pid_start INT, restarts INT DEFAULT 0, started REAL,
  exit_code INT, next_start REAL, routed TEXT DEFAULT 'none', weight INT DEFAULT 0,
  secrets INT DEFAULT 0);
CREATE TABLE IF NOT EXISTS deploys(id INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT, env TEXT,
  release INT, previous INT, kind TEXT, strategy TEXT, status TEXT, pid INT, pid_start INT,
  started REAL, finished REAL, message TEXT);
CREATE TABLE IF NOT EXISTS journal(deploy INT, seq INT, step TEXT, phase TEXT, ts REAL);
CREATE TABLE IF NOT EXISTS locks(name TEXT PRIMARY KEY, pid INT, pid_start INT, host TEXT,
  what TEXT, since REAL);
CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL, app TEXT,
  env TEXT, release INT, kind TEXT, message TEXT);
CREATE TABLE IF NOT EXISTS kv(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS secrets(app TEXT, env TEXT, name TEXT, version INT, nonce BLOB,
  ciphertext BLOB, PRIMARY KEY(app, env, version));
CREATE TABLE IF NOT EXISTS accessories(app TEXT, env TEXT, name TEXT, type TEXT, port INT,
  data TEXT, spec TEXT, created REAL, PRIMARY KEY(app, env, name));
CREATE TABLE IF NOT EXISTS backups(id TEXT PRIMARY KEY, app TEXT, env TEXT, accessory TEXT,
  type TEXT, path TEXT, size INT, sha256 TEXT, created REAL, release INT, reason TEXT,
  verified REAL, details TEXT, copy TEXT);
CREATE TABLE IF NOT EXISTS samples(app TEXT, env TEXT, release INT, second INT, c2 INT, c3 INT,
  c4 INT, c5 INT, hist TEXT, seconds_sum REAL, PRIMARY KEY(app, env, release, second));
"""

TABLES = re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", SCHEMA)


def home_dir() -> Path:
    """$HEADWAY_HOME, else a per-user, per-host folder."""
    env = os.environ.get("HEADWAY_HOME")
    if env:
        return Path(env).expanduser().resolve()
    base = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))
    return base / "headway" / socket.gethostname()


def actor() -> str:
    """Who runs this command, for events and notifications: $HEADWAY_ACTOR (a CI job sets
    it to the person who pushed), else user@host."""
    import getpass

    return os.environ.get("HEADWAY_ACTOR") or f"{getpass.getuser()}@{socket.gethostname()}"


def socket_dir(owner: Path, prefix: str) -> Path:
    """A short folder for the unix sockets of what lives in `owner`: a socket's path is at
    most 107 bytes (HAProxy's master socket 97), and a home can be deep in a tree."""
    root = "/run/headway" if os.geteuid() == 0 else os.environ.get("XDG_RUNTIME_DIR", "/tmp")
    return Path(root) / f"{prefix}-{hashlib.sha256(str(owner).encode()).hexdigest()[:12]}"


PRIVATE = {"": 0o700, "state.db": 0o600, "state.db-wal": 0o600, "state.db-shm": 0o600,
           "store-backups": 0o700, "master.key": 0o600}


def private(home: Path) -> None:
    """The home and the store's files closed to everyone but their owner, whatever modes
    they had (a `chmod 755` by hand, a umask). Files not made yet are skipped; a home this
    user does not own is left as it is."""
    for name, mode in PRIVATE.items():
        path = home / name if name else home
        try:
            if os.stat(path).st_mode & 0o777 != mode:
                os.chmod(path, mode)
        except OSError:
            pass


@dataclass
class Release:
    app: str
    env: str
    number: int
    status: str  # building | ready | active | previous | failed | retired
    digest: str
    path: str
    spec: str
    created: float
    deployed: float | None = None
    warm_until: float | None = None
    failure: str | None = None


@dataclass
class Instance:
    id: str
    app: str
    env: str
    release: int
    process: str
    port: int
    argv: list[str]
    cwd: str
    env_vars: dict[str, str]
    log: str
    stop_timeout: float
    desired: str  # running | stopped
    state: str  # pending | running | backoff | stopping | stopped | failed
    pid: int | None = None
    pid_start: int | None = None
    restarts: int = 0
    started: float | None = None
    exit_code: int | None = None
    next_start: float | None = None
    routed: str = "none"  # none | ready | drain | maint
    weight: int = 0
    secrets: int = 0  # the secrets version injected at start (0: none)


_JSON = {"argv", "env_vars"}


def _load(cls: type[Any], row: sqlite3.Row) -> Any:
    names = {f.name for f in fields(cls)}
    data = {k: (json.loads(row[k]) if k in _JSON else row[k]) for k in row.keys() if k in names}  # noqa: SIM118 - Row
    return cls(**data)


def _add_columns(db: sqlite3.Connection, table: str, columns: dict[str, str]) -> None:
    """Columns added since a store was created: a store made by an older Headway gains them."""
    have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
    for name, decl in columns.items():
        if name not in have:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")


class Store:
    """Every sqlite3 error below surfaces as a StoreError naming state.db (see store.sqlite)."""

    def __init__(self, home: Path, *, timeout: float | None = None) -> None:
        self.home = home
        self.path = home / "state.db"
        try:
            home.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise store_error(self.path, exc) from exc
        self.db = connect(self.path, timeout=timeout)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        private(home)
        self.db.execute("PRAGMA synchronous=NORMAL")
        have = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not set(TABLES) <= have:  # checked first: opening a store needs no write lock
            self.db.executescript(SCHEMA)
        _add_columns(self.db, "apps", {"health_expect": "TEXT DEFAULT '2xx'",
                                       "request_timeout": "REAL DEFAULT 60",
                                       "health_timeout": "REAL DEFAULT 2"})
        _add_columns(self.db, "releases", {"builder_pid": "INT", "builder_start": "INT"})

    def close(self) -> None:
        self.db.close()

    def snapshot(self, reason: str = "manual") -> Path:
        """A consistent copy of the store in store-backups/ (see store.snapshots)."""
        return snapshots.take(self.db, self.home, reason)

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def q(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:  # a corrupted page shows only when it is read
            raise store_error(self.path, exc) from exc

    # apps -----------------------------------------------------------------------------------
    def upsert_app(self, app: str, env: str, router_port: int, router_address: str,
                   hosts: list[str], is_default: bool, health_path: str,
                   health_interval: float, health_expect: str = "2xx",
                   request_timeout: float = 60.0, health_timeout: float = 2.0) -> None:
        """Record how the router reaches an app (keeps its place in the order of apps)."""
        old = self.q("SELECT created FROM apps WHERE app=? AND env=?", app, env)
        self.db.execute("INSERT OR REPLACE INTO apps(app, env, router_port, router_address, "
                        "hosts, is_default, health_path, health_interval, created, "
                        "health_expect, request_timeout, health_timeout) "
                        "VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
                        (app, env, router_port, router_address, json.dumps(hosts),
                         int(is_default), health_path, health_interval,
                         old[0][0] if old else time.time(), health_expect, request_timeout,
                         health_timeout))

    def apps(self) -> list[dict[str, Any]]:
        rows = self.q("SELECT * FROM apps ORDER BY created")
        return [dict(r) | {"hosts": json.loads(r["hosts"])} for r in rows]

    def delete_app(self, app: str, env: str) -> None:
        with self.tx() as db:
            for table in ("apps", "releases", "instances"):
                db.execute(f"DELETE FROM {table} WHERE app=? AND env=?", (app, env))

    # releases -------------------------------------------------------------------------------
    def add_release(self, app: str, env: str, *, digest: str, root: Path, spec: str) -> Release:
        """A new release numbered after the last one; its artifact goes in root/<number>.
        The store is copied first (a deploy is when a good copy is worth having), and the
        builder's pid kept so that a build killed midway is found and failed later."""
        self.snapshot("deploy")
        me = os.getpid()
        with self.tx() as db:
            (last,) = db.execute("SELECT COALESCE(MAX(number), 0) FROM releases WHERE app=? "
                                 "AND env=?", (app, env)).fetchone()
            path = str(root / str(last + 1))
            rel = Release(app, env, last + 1, "building", digest, path, spec, time.time())
            db.execute("INSERT INTO releases(app, env, number, status, digest, path, spec, "
                       "created, builder_pid, builder_start) VALUES(?,?,?,?,?,?,?,?,?,?)",
                       (app, env, rel.number, rel.status, digest, path, spec, rel.created,
                        me, proc_start_time(me)))
        return rel

    def releases(self, app: str, env: str) -> list[Release]:
        rows = self.q("SELECT * FROM releases WHERE app=? AND env=? ORDER BY number DESC", app, env)
        return [_load(Release, r) for r in rows]

    def release(self, app: str, env: str, number: int) -> Release | None:
        rows = self.q("SELECT * FROM releases WHERE app=? AND env=? AND number=?", app, env, number)
        return _load(Release, rows[0]) if rows else None

    def set_release(self, app: str, env: str, number: int, **changes: Any) -> None:
        sets = ", ".join(f"{k}=?" for k in changes)
        self.db.execute(f"UPDATE releases SET {sets} WHERE app=? AND env=? AND number=?",
                        (*changes.values(), app, env, number))

    # instances ------------------------------------------------------------------------------
    def add_instance(self, inst: Instance) -> None:
        values = [json.dumps(getattr(inst, f.name)) if f.name in _JSON else getattr(inst, f.name)
                  for f in fields(Instance)]
        marks = ",".join("?" * len(values))
        self.db.execute(f"INSERT INTO instances VALUES({marks})", values)

    def instances(self, app: str | None = None, env: str | None = None, *,
                  release: int | None = None) -> list[Instance]:
        sql, args = "SELECT * FROM instances WHERE 1=1", []
        for col, val in (("app", app), ("env", env), ("release", release)):
            if val is not None:
                sql += f" AND {col}=?"
                args.append(val)
        return [_load(Instance, r) for r in self.q(sql + " ORDER BY release, process, id", *args)]

    def instance(self, inst_id: str) -> Instance | None:
        rows = self.q("SELECT * FROM instances WHERE id=?", inst_id)
        return _load(Instance, rows[0]) if rows else None

    def set_instance(self, inst_id: str, **changes: Any) -> None:
        sets = ", ".join(f"{k}=?" for k in changes)
        self.db.execute(f"UPDATE instances SET {sets} WHERE id=?", (*changes.values(), inst_id))

    def delete_instance(self, inst_id: str) -> None:
        self.db.execute("DELETE FROM instances WHERE id=?", (inst_id,))

    def used_ports(self) -> set[int]:
        return {r[0] for r in self.q("SELECT port FROM instances UNION SELECT port FROM "
                                     "accessories")}

    def port_holder(self, port: int) -> str | None:
        """What of this home uses `port` ("accessory db of shop (production)"), if anything."""
        rows = self.q("SELECT 'accessory ' || name, app, env FROM accessories WHERE port=? "
                      "UNION ALL SELECT 'instance ' || id, app, env FROM instances WHERE port=?",
                      port, port)
        return f"{rows[0][0]} of {rows[0][1]} ({rows[0][2]})" if rows else None

    # deploys and journal --------------------------------------------------------------------
    def begin_deploy(self, app: str, env: str, *, release: int, previous: int | None,
                     kind: str, strategy: str) -> int:
        cur = self.db.execute(
            "INSERT INTO deploys(app, env, release, previous, kind, strategy, status, pid, "
            "pid_start, started) VALUES(?,?,?,?,?,?,'running',?,?,?)",
            (app, env, release, previous, kind, strategy, os.getpid(),
             proc_start_time(os.getpid()), time.time()))
        assert cur.lastrowid is not None
        return cur.lastrowid

    def end_deploy(self, deploy: int, status: str, message: str = "") -> None:
        """Record how a deploy ended; after a success the store is copied again, so the
        newest copy always knows the live release."""
        self.db.execute("UPDATE deploys SET status=?, finished=?, message=? WHERE id=?",
                        (status, time.time(), message, deploy))
        if status == "succeeded":
            self.snapshot("deploy")

    def journal(self, deploy: int, step: str, phase: str) -> None:
        (seq,) = self.db.execute("SELECT COUNT(*) FROM journal WHERE deploy=?", (deploy,)).fetchone()
        self.db.execute("INSERT INTO journal VALUES(?,?,?,?,?)",
                        (deploy, seq, step, phase, time.time()))

    def journal_of(self, deploy: int) -> list[sqlite3.Row]:
        """The deploy's journal in order: step, phase ("begin"/"done"...) and ts of each line."""
        return self.q("SELECT step, phase, ts FROM journal WHERE deploy=? ORDER BY seq", deploy)

    def interrupted_deploys(self, app: str, env: str) -> list[dict[str, Any]]:
        """Deploys still marked running whose process is gone (killed, crashed). Releases whose
        build was killed (no deploy row yet) are failed and their leftovers removed on the way,
        since every command that recovers asks this first."""
        self.fail_dead_builds(app, env)
        rows = self.q("SELECT * FROM deploys WHERE app=? AND env=? AND status='running'", app, env)
        return [dict(r) for r in rows if not pid_alive(r["pid"], r["pid_start"])]

    def fail_dead_builds(self, app: str, env: str) -> list[int]:
        """Mark failed the releases still 'building' whose builder process is gone, and delete
        the partial release folder and virtualenv it left. Returns their numbers."""
        rows = self.q("SELECT number, path, builder_pid, builder_start FROM releases WHERE app=? "
                      "AND env=? AND status='building'", app, env)
        dead = [r for r in rows if r["builder_pid"] is not None
                and not pid_alive(r["builder_pid"], r["builder_start"])]
        for r in dead:
            why = f"build interrupted: its command (pid {r['builder_pid']}) died"
            self.db.execute("UPDATE releases SET status='failed', failure=? WHERE app=? AND "
                            "env=? AND number=? AND status='building'", (why, app, env,
                                                                       r["number"]))
            self.event(app, env, "deploy.failed", why, release=r["number"])
            leftovers.remove_build(self.home, Path(r["path"]), r["builder_pid"])
        return [r["number"] for r in dead]

    def deploys(self, app: str, env: str, *, limit: int = 20) -> list[dict[str, Any]]:
        rows = self.q("SELECT * FROM deploys WHERE app=? AND env=? ORDER BY id DESC LIMIT ?",
                      app, env, limit)
        return [dict(r) for r in rows]

    # locks ----------------------------------------------------------------------------------
    def acquire(self, name: str, what: str, *, wait: float = 0) -> None:
        """Take a named lock, or raise LockedError naming the live holder (after waiting up to
        `wait` seconds for it). A lock whose holder died is taken over (the caller then
        recovers what the holder left)."""
        deadline = time.monotonic() + wait
        while True:
            try:
                return self._acquire(name, what)
            except LockedError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)

    def _acquire(self, name: str, what: str) -> None:
        me, host = os.getpid(), socket.gethostname()
        with self.tx() as db:
            row = db.execute("SELECT * FROM locks WHERE name=?", (name,)).fetchone()
            if row and row["pid"] != me and row["host"] == host and pid_alive(row["pid"],
                                                                            row["pid_start"]):
                since = time.strftime("%H:%M:%S", time.localtime(row["since"]))
                raise LockedError(
                    f"{name} is locked by `{row['what']}` (pid {row['pid']} on {row['host']}, "
                    f"since {since})", hint="wait for it to finish, or stop that process")
            db.execute("INSERT OR REPLACE INTO locks VALUES(?,?,?,?,?,?)",
                       (name, me, proc_start_time(me), host, what, time.time()))

    def release_lock(self, name: str) -> None:
        self.db.execute("DELETE FROM locks WHERE name=? AND pid=?", (name, os.getpid()))

    @contextmanager
    def lock(self, name: str, what: str, *, wait: float = 0) -> Iterator[None]:
        self.acquire(name, what, wait=wait)
        try:
            yield
        finally:
            self.release_lock(name)

    # events and key/values ------------------------------------------------------------------
    def event(self, app: str, env: str, kind: str, message: str, *,
              release: int | None = None) -> None:
        self.db.execute("INSERT INTO events(ts, app, env, release, kind, message) "
                        "VALUES(?,?,?,?,?,?)", (time.time(), app, env, release, kind, message))

    def events(self, app: str, env: str, *, limit: int = 50) -> list[dict[str, Any]]:
        rows = self.q("SELECT * FROM events WHERE app=? AND env=? ORDER BY id DESC LIMIT ?",
                      app, env, limit)
        return [dict(r) for r in reversed(rows)]

    # request samples (one row per app, env, release and second; release 0: no server) ------
    def add_samples(self, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        with self.tx() as db:
            db.executemany("INSERT OR REPLACE INTO samples VALUES(?,?,?,?,?,?,?,?,?,?)", rows)

    def samples(self, app: str, env: str, *, since: int) -> list[sqlite3.Row]:
        return self.q("SELECT * FROM samples WHERE app=? AND env=? AND second>=? ORDER BY second",
                      app, env, since)

    def prune_samples(self, *, before: int) -> None:
        self.db.execute("DELETE FROM samples WHERE second<?", (before,))

    def get(self, key: str) -> str | None:
        rows = self.q("SELECT value FROM kv WHERE key=?", key)
        return rows[0][0] if rows else None

    def put(self, key: str, value: str | None) -> None:
        if value is None:
            self.db.execute("DELETE FROM kv WHERE key=?", (key,))
        else:
            self.db.execute("INSERT OR REPLACE INTO kv VALUES(?,?)", (key, value))
