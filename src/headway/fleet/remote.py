"""What Headway runs on a fleet host, in that host's own Headway virtualenv, for the control
machine: `python -m headway.fleet.remote info|receive|lock|mark|pull ...`. Each prints one
JSON line. Acts on this host's $HEADWAY_HOME only; reads secrets (and the registry password)
from stdin, never argv; never logs a secret's value. Also: `build_id`, the fingerprint of an
installed Headway, and `pulled_image`, which the container runtime asks before it builds: in
a fleet deploy the host runs the image the control machine pulled there by digest."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import headway

FLEET = "fleet"  # $HEADWAY_HOME/fleet: venv/, artifacts/, releases/
IMAGE_VAR = "HEADWAY_FLEET_IMAGE"  # REPO@sha256:... a fleet deploy runs instead of a build
PROCESSES_VAR = "HEADWAY_FLEET_PROCESSES"  # web,worker: what a host runs ([servers] roles)
RELEASE_VAR = "HEADWAY_FLEET_RELEASE"  # "done": the fleet's first host ran the release command
REACH = ("this host must reach [registry] server (routes, firewall, its certificate); nothing "
         "was switched: fix it, then `headway deploy` again")


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
    from importlib import metadata  # here: a host starts this module often, version() rarely

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


def pull(ref: str, runtime: str, login: dict[str, Any]) -> dict[str, Any]:
    """Pull the image `ref` (REPO@sha256:...) with this host's engine, logged in (when the
    registry wants it) through a throw-away auth file: no credential stays on the host."""
    from headway.errors import ConfigError, RuntimeFailure
    from headway.runtime import engines

    if "@sha256:" not in ref:
        raise ConfigError(f"{ref}: not a digest reference (REPO@sha256:...)")
    binary = engines.find(runtime)
    podman = engines.of(binary).name == "podman"
    tls = ["--tls-verify=false"] if podman and not login.get("tls_verify", True) else []
    with tempfile.TemporaryDirectory(prefix="headway-pull-") as tmp:
        auth = ["--authfile", f"{tmp}/auth.json"] if podman else []
        cli = [binary] if podman else [binary, "--config", tmp]
        if login.get("username"):
            done = subprocess.run([*cli, "login", *auth, *tls, "--username", login["username"],
                                   "--password-stdin", login["server"]],
                                  input=login.get("password") or "", capture_output=True,
                                  text=True, timeout=120, check=False)
            if done.returncode != 0 and _network(done.stderr):
                raise RuntimeFailure(f"cannot pull {ref}: registry {login['server']} does not "
                                     f"answer here: {_last(done.stderr)}", hint=REACH)
            if done.returncode != 0:
                raise RuntimeFailure(f"registry {login['server']}: login failed: "
                                     f"{_last(done.stderr)}", hint="check [registry] username "
                                     "and its password on the control machine")
        done = subprocess.run([*cli, "pull", "--quiet", *auth, *tls, ref], capture_output=True,
                              text=True, timeout=1800, check=False)
        if done.returncode != 0:
            raise RuntimeFailure(f"cannot pull {ref}: {_last(done.stderr)}", hint=REACH)
    found = subprocess.run([binary, "image", "inspect", "--format", "{{.Id}}", ref],
                           capture_output=True, text=True, check=False).stdout.strip()
    return {"pulled": ref, "image": found}


def _last(text: str) -> str:
    """The engine's error, on one line (podman wraps a network error over two)."""
    return " ".join(text.replace("Error: ", "").split())[-300:] or "no output"


def _network(text: str) -> bool:
    low = text.lower()
    return any(w in low for w in ("connect:", "dial tcp", "unreachable", "connection refused",
                                  "no such host", "i/o timeout", "no route to host"))


def pulled_image(binary: str, *, repo: str, tags: list[str]) -> Any:
    """In a fleet deploy ($HEADWAY_FLEET_IMAGE set by the control machine): the image it
    pulled here by digest, tagged for this release, as builder.image.Built; None otherwise
    (a local deploy builds as usual)."""
    ref = os.environ.get(IMAGE_VAR)
    if not ref:
        return None
    from headway.builder import image
    from headway.errors import RuntimeFailure

    found = subprocess.run([binary, "image", "inspect", "--format", "{{.Id}}", ref],
                           capture_output=True, text=True, check=False).stdout.strip()
    if not found:
        raise RuntimeFailure(f"image {ref} is not on this host",
                             hint="a fleet deploy pulls it first: run `headway deploy` on the "
                             "control machine")
    names = [f"{repo}:{t}" for t in tags]
    for name in names:
        subprocess.run([binary, "tag", found, name], capture_output=True, check=False)
    if image.after_build is not None:  # [scan] fail_on holds for it as for any image
        image.after_build(binary, found)
    return image.Built(found, names, 0.0)


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
    elif cmd == "pull":  # REF RUNTIME, the registry login on stdin
        result = pull(args[0], args[1], json.loads(sys.stdin.read() or "{}"))
    elif cmd == "mark":
        result = mark(args[0], args[1], args[2], current="--current" in args,
                      back="--back" in args)
    else:
        raise SystemExit(f"unknown command {cmd}")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
