"""What Headway runs on a fleet host, in that host's own Headway virtualenv, for the control
machine: `python -m headway.fleet.remote info|receive|lock|mark ...`. Each prints one
JSON line. Acts on this host's $HEADWAY_HOME only; reads secrets from stdin, never argv;
never logs a secret's value. Also: `build_id`, the fingerprint of an installed Headway."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import sys
import tarfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import headway

FLEET = "fleet"  # $HEADWAY_HOME/fleet: venv/, artifacts/, releases/


@functools.lru_cache(maxsize=1)
def build_id() -> str:
    """sha256 (16 hex) of Headway's own modules as installed: two installs of one source tree
    (a checkout, its wheel) agree; any change to the code does not."""
    root = Path(headway.__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if all((root / parent / "__init__.py").exists() for parent in rel.parents):
            h.update(str(rel).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def version() -> str:
    try:
        return metadata.version("headway")
    except metadata.PackageNotFoundError:
        return "unknown"


def fleet_key(app: str, env: str) -> str:
    return f"fleet:{app}:{env}"


def _store() -> Any:
    from headway.store import Store, home_dir

    return Store(home_dir())


def info(app: str | None = None, env: str | None = None) -> dict[str, Any]:
    from headway.store import home_dir

    found: dict[str, Any] = {"version": version(), "build": build_id(), "home": str(home_dir())}
    if app and env and (home_dir() / "state.db").exists():
        store = _store()
        active = next((r for r in store.releases(app, env) if r.status == "active"), None)
        found["active"] = active.number if active else None
        found["fleet"] = json.loads(store.get(fleet_key(app, env)) or "{}")
    return found


def unpack(sha: str) -> dict[str, Any]:
    """Check the shipped archive against its sha256, then unpack it (once) beside it."""
    from headway.store import home_dir

    base = home_dir() / FLEET
    archive, dest = base / "artifacts" / f"{sha}.tar.gz", base / "releases" / sha
    if not (dest / "headway.toml").exists():
        h = hashlib.sha256()
        with archive.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        if h.hexdigest() != sha:
            archive.unlink()
            raise SystemExit(f"{archive}: checksum mismatch (got {h.hexdigest()[:12]}, "
                             f"want {sha[:12]}): damaged in transit, removed")
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        os.replace(tmp, dest)
    _prune(base, keep=sha)
    return {"config": str(dest / "headway.toml")}


def _prune(base: Path, *, keep: str, count: int = 10) -> None:
    """The newest `count` shipped artifacts stay (converge copies them between hosts)."""
    archives = sorted((base / "artifacts").glob("*.tar.gz"), key=lambda p: p.stat().st_mtime,
                      reverse=True)
    for old in archives[count:]:
        sha = old.name.removesuffix(".tar.gz")
        if sha != keep:
            old.unlink(missing_ok=True)
            shutil.rmtree(base / "releases" / sha, ignore_errors=True)


def set_secrets(app: str, env: str, data: dict[str, str]) -> dict[str, Any]:
    """Make this host's secrets of app/env those given (stdin): set the changed, unset the
    gone; an unchanged set makes no new secrets version (so no new release)."""
    from headway.secrets import Secret, Vault, load_key

    store = _store()
    vault = Vault(store, load_key(store.home))
    have = {k: v.reveal() for k, v in vault.values(app, env).items()} \
        if vault.names(app, env) else {}
    changed = [n for n, v in data.items() if have.get(n) != v]
    for name in changed:
        vault.set(app, env, name, Secret(data[name]))
    gone = [n for n in have if n not in data]
    for name in gone:
        vault.unset(app, env, name)
    return {"changed": changed, "removed": gone}


def hold_lock(name: str, holder: str) -> None:
    """Hold this host's store lock `name` until stdin closes (the control machine's ssh ended,
    however it ended): a fleet lock that cannot outlive its holder."""
    from headway.errors import LockedError

    store = _store()
    try:
        store.acquire(name, holder)
    except LockedError as exc:
        print(json.dumps({"locked": False, "holder": exc.message}), flush=True)
        return
    print(json.dumps({"locked": True}), flush=True)
    try:
        sys.stdin.read()
    finally:
        store.release_lock(name)


def mark(app: str, env: str, sha: str, *, current: bool, back: bool = False) -> dict[str, Any]:
    """Record that this host's live release is artifact `sha`; with `current`, that it is now
    the fleet's release (appended to the fleet's history), with `back` that the fleet went
    back to it (the newest entry of the history is dropped)."""
    store = _store()
    record: dict[str, Any] = json.loads(store.get(fleet_key(app, env)) or "{}")
    active = next((r for r in store.releases(app, env) if r.status == "active"), None)
    if active is not None:
        record.setdefault("releases", {})[str(active.number)] = sha
    history: list[str] = record.get("history", [])
    if back and history and history[-1] != sha:
        history = history[:-1]
    if (current or back) and history[-1:] != [sha]:
        history = [*history, sha][-20:]
    if current or back:
        record.update(current=sha, at=time.time(), history=history)
    store.put(fleet_key(app, env), json.dumps(record))
    return record | {"active": active.number if active else None}


def main(argv: list[str]) -> None:
    from headway.errors import HeadwayError

    try:
        _main(argv[0], argv[1:])
    except HeadwayError as exc:  # said plainly on stderr, its exit code kept
        print(f"error: {exc.message}" + (f"\nhint: {exc.hint}" if exc.hint else ""),
              file=sys.stderr)
        raise SystemExit(exc.exit_code) from None


def _main(cmd: str, args: list[str]) -> None:
    if cmd == "lock":
        hold_lock(*args)
        return
    if cmd == "info":
        result = info(*args)
    elif cmd == "receive":  # SHA APP ENV, the secrets on stdin
        result = unpack(args[0]) | set_secrets(args[1], args[2],
                                                json.loads(sys.stdin.read() or "{}"))
    elif cmd == "mark":
        result = mark(args[0], args[1], args[2], current="--current" in args,
                      back="--back" in args)
    else:
        raise SystemExit(f"unknown command {cmd}")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
