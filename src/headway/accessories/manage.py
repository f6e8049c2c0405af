"""Accessories of an app and environment: created and started by a deploy before the app
(never restarted by one), kept running by the agent, listed by `headway accessory status`.
Each has a row in the store (its port, folder and spec) and its URL, password included, in
the secret store under `url_env`, so it reaches the app like any secret and nowhere else."""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from headway.accessories.servers import DRIVERS, Accessory
from headway.errors import ConfigError, LockedError, NotFound
from headway.runtime.process import free_port
from headway.secrets import Secret, Vault, load_key
from headway.spec.models import AccessorySpec, BackupsSpec, Spec
from headway.store import Store, pid_alive

_FIXED = ("type", "database", "user", "path")


def backups_key(app: str, env: str) -> str:
    return f"backups:{app}:{env}"


def lock_name(acc: Accessory) -> str:
    return f"accessory:{acc.app}:{acc.env}:{acc.name}"


def load(store: Store, app: str, env: str, name: str | None = None) -> list[Accessory]:
    rows = store.q("SELECT * FROM accessories WHERE app=? AND env=? ORDER BY created", app, env)
    out = [Accessory(r["app"], r["env"], r["name"], AccessorySpec.model_validate_json(r["spec"]),
                     r["port"], Path(r["data"])) for r in rows]
    if name is None:
        return out
    found = [a for a in out if a.name == name]
    if not found:
        raise NotFound(f"{app} ({env}) has no accessory {name!r}",
                       hint=f"its accessories: {', '.join(a.name for a in out) or 'none'}")
    return found


def everything(store: Store) -> list[Accessory]:
    return [a for row in store.q("SELECT DISTINCT app, env FROM accessories")
            for a in load(store, row["app"], row["env"])]


def password(store: Store, acc: Accessory) -> Secret:
    vault = Vault(store, load_key(store.home, create=False))
    url = vault.values(acc.app, acc.env).get(acc.spec.env_name)
    if url is None:
        raise NotFound(f"secret {acc.spec.env_name} of {acc.app} ({acc.env}) is gone; "
                       f"{acc.label} cannot be reached", hint="it holds the accessory's password; "
                       "restore it with `headway secrets set`")
    return Secret(urllib.parse.unquote(urllib.parse.urlsplit(url.reveal()).password or ""))


def alive(acc: Accessory) -> bool:
    return pid_alive(DRIVERS[acc.spec.type].pid(acc))


def start(store: Store, acc: Accessory) -> None:
    store.put(f"stopped:{lock_name(acc)}", None)
    DRIVERS[acc.spec.type].start(acc, password(store, acc))


def ensure(store: Store, spec: Spec, env: str, progress: Any) -> None:
    """Create what is missing, start what is stopped; leave running ones alone."""
    app = spec.app.name
    store.put(backups_key(app, env), spec.backups.model_dump_json())
    known = {a.name: a for a in load(store, app, env)}
    for name, want in spec.accessories.items():
        acc = known.get(name)
        if acc is None:
            _create(store, app, env, name, want, progress)
            continue
        for key in _FIXED:
            if getattr(acc.spec, key) != getattr(want, key):
                raise ConfigError(f"accessories.{name}.{key}: cannot change from "
                                  f"{getattr(acc.spec, key)!r} to {getattr(want, key)!r}; "
                                  f"its data is in {acc.data}",
                                  hint="declare a new accessory and move the data with "
                                  "`headway backup` / `restore --into`")
        if want.port and want.port != acc.port:
            raise ConfigError(f"accessories.{name}.port: it runs on {acc.port}; a port cannot "
                              "change once the app has its URL")
        acc = _sync_scheme(store, acc, want, progress)
        _sync_parts(store, acc, want.env, progress)
        if not alive(acc):
            progress(f"starting {acc.label}", app=app, env=env, step="accessory")
            with store.lock(lock_name(acc), f"start {acc.label}", wait=30):
                if not alive(acc):
                    start(store, acc)
            store.event(app, env, "accessory.started", f"{name} started")


def _create(store: Store, app: str, env: str, name: str, want: AccessorySpec,
            progress: Any) -> None:
    vault = Vault(store, load_key(store.home))
    if want.env_name in vault.names(app, env):
        raise ConfigError(f"accessories.{name}: secret {want.env_name} is already set for "
                          f"{app} ({env})", hint=f"set accessories.{name}.url_env to another "
                          f"name, or `headway secrets unset {want.env_name}`")
    port = want.port or free_port(store)
    holder = store.port_holder(want.port) if want.port else None
    if holder:
        raise ConfigError(f"accessories.{name}.port: {want.port} is already used on this host "
                          f"by the {holder}", hint=f"set another [accessories.{name}] port (an accessory keeps "
                          "its port as long as its data is kept)")
    base = store.home / "apps" / app / env / "accessories" / name
    acc = Accessory(app, env, name, want, port, base)
    driver = DRIVERS[want.type]
    progress(f"creating {acc.label}: {want.type} {driver.version(acc)} on 127.0.0.1:{port}",
             app=app, env=env, step="accessory")
    word = Secret(secrets.token_urlsafe(24))
    with store.lock(lock_name(acc), f"create {acc.label}", wait=30):
        driver.init(acc, word)
        vault.set(app, env, want.env_name, Secret(driver.url(acc, word)))
        store.db.execute("INSERT INTO accessories VALUES(?,?,?,?,?,?,?,?)",
                         (app, env, name, want.type, port, str(base),
                          want.model_dump_json(), time.time()))
    store.event(app, env, "accessory.created", f"{name}: {want.type} on 127.0.0.1:{port}, "
                f"URL in secret {want.env_name}")
    _sync_parts(store, acc, want.env, progress)


def url_parts(url: str) -> dict[str, str]:
    """url, host, port, user, password, database of an accessory's URL."""
    u = urllib.parse.urlsplit(url)
    return {"url": url, "host": u.hostname or "", "port": str(u.port or ""),
            "user": urllib.parse.unquote(u.username or ""),
            "password": urllib.parse.unquote(u.password or ""), "database": u.path.lstrip("/")}


def _sync_scheme(store: Store, acc: Accessory, want: AccessorySpec,
                 progress: Any) -> Accessory:
    """A changed postgres `scheme` rewrites the URL secret's scheme, password kept."""
    if acc.spec.type != "postgres" or want.scheme == acc.spec.scheme:
        return acc
    vault = Vault(store, load_key(store.home, create=False))
    url = vault.values(acc.app, acc.env).get(acc.spec.env_name)
    if url is not None:
        rest = url.reveal().split("://", 1)[1]
        vault.set(acc.app, acc.env, acc.spec.env_name,
                  Secret(f"{want.scheme or 'postgresql'}://{rest}"))
    spec = acc.spec.model_copy(update={"scheme": want.scheme})
    store.db.execute("UPDATE accessories SET spec=? WHERE app=? AND env=? AND name=?",
                     (spec.model_dump_json(), acc.app, acc.env, acc.name))
    progress(f"{acc.label}: its URL's scheme is now {want.scheme or 'postgresql'}",
             app=acc.app, env=acc.env, step="accessory")
    return dataclasses.replace(acc, spec=spec)


def _sync_parts(store: Store, acc: Accessory, wanted: Mapping[str, str],
                progress: Any) -> None:
    """The variables of `[accessories.NAME] env` (DB_HOST = "host", ...), kept as secrets
    beside the URL they come from, so they are pinned per release and reach the app as the
    URL does; a variable the user set as a secret of their own is never overwritten."""
    key = f"parts:{lock_name(acc)}"
    ours = set(json.loads(store.get(key) or "[]"))
    vault = Vault(store, load_key(store.home, create=False))
    current = vault.values(acc.app, acc.env)
    url = current.get(acc.spec.env_name)
    if url is None:
        return  # reported by password() where it matters
    parts = url_parts(url.reveal())
    for var, part in wanted.items():
        if var in current and var not in ours:
            raise ConfigError(f"accessories.{acc.name}.env.{var}: {var} is already a secret of "
                              f"{acc.app} ({acc.env}) set by hand", hint=f"`headway secrets "
                              f"unset {var}` to let the accessory set it, or remove it from env")
        if var not in current or current[var].reveal() != parts[part]:
            vault.set(acc.app, acc.env, var, Secret(parts[part]))
            progress(f"{acc.label}: {var} set from its {part}", app=acc.app, env=acc.env,
                     step="accessory")
    for var in ours - set(wanted):
        if var in current:
            vault.unset(acc.app, acc.env, var)
    store.put(key, json.dumps(sorted(wanted)))


_failed: dict[str, tuple[int, float]] = {}  # accessory lock name -> (failures, next try)


def supervise(store: Store, log: Any) -> None:
    """The agent's round: start any accessory that died, unless a command is working on it;
    one that will not start is tried again after 2, 4, ... up to 60 s."""
    for acc in everything(store):
        key = lock_name(acc)
        if alive(acc) or store.get(f"stopped:{key}") or \
                _failed.get(key, (0, 0.0))[1] > time.monotonic():
            continue
        try:
            with store.lock(key, "agent: restart"):
                if not alive(acc):
                    start(store, acc)
                    store.event(acc.app, acc.env, "accessory.restarted",
                                f"{acc.name} was not running; started again")
                    log(f"{acc.label} was not running; started again")
            _failed.pop(key, None)
        except LockedError:
            continue
        except Exception as exc:  # noqa: BLE001 - keep supervising the others
            failures = _failed.get(key, (0, 0.0))[0] + 1
            _failed[key] = (failures, time.monotonic() + min(2.0 ** failures, 60.0))
            log(f"{acc.label} would not start ({failures} times): {exc}")


def stop(store: Store, acc: Accessory) -> None:
    """Stop it and keep it stopped (until `restart` or a deploy starts it)."""
    with store.lock(lock_name(acc), f"stop {acc.label}", wait=30):
        store.put(f"stopped:{lock_name(acc)}", "1")
        DRIVERS[acc.spec.type].stop(acc, password(store, acc))


def restart(store: Store, acc: Accessory) -> None:
    with store.lock(lock_name(acc), f"restart {acc.label}", wait=30):
        DRIVERS[acc.spec.type].stop(acc, password(store, acc))
        start(store, acc)
    store.event(acc.app, acc.env, "accessory.restarted", f"{acc.name} restarted by command")


def status(store: Store, app: str, env: str, spec: Spec | None) -> list[dict[str, Any]]:
    rows = []
    for acc in load(store, app, env):
        size = sum(f.stat().st_size for f in acc.data.rglob("*") if f.is_file()) \
            if acc.data.exists() else 0
        driver, running = DRIVERS[acc.spec.type], alive(acc)
        state = "stopped" if not running else "healthy" \
            if driver.healthy(acc, password(store, acc)) else "not answering"
        rows.append({"name": acc.name, "type": acc.spec.type, "state": state,
                     "pid": driver.pid(acc) if running else None,
                     "address": f"127.0.0.1:{acc.port}", "url_env": acc.spec.env_name,
                     "data": str(acc.data), "data_mb": round(size / 2**20, 1),
                     "in_config": spec is None or acc.name in spec.accessories})
    return rows


def backups_spec(store: Store, app: str, env: str) -> BackupsSpec:
    raw = store.get(backups_key(app, env))
    return BackupsSpec.model_validate_json(raw) if raw else BackupsSpec()
