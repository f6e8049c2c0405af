"""A release artifact for the process runtime: an immutable snapshot of the app folder
(respecting .gitignore and .headwayignore) plus its dependencies, installed the way the app's
language and tool intend: for Python a virtualenv keyed by every dependency file and the
interpreter (pyinstall.py), shared read-only by releases with the same key; for Node, node.py's
install. Never edits the app's own files outside the release folder."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pathspec

from headway.builder import pydeps, python
from headway.builder.detect import detect
from headway.errors import ConfigError
from headway.runtime import pyinstall
from headway.spec.models import Spec

ALWAYS_IGNORED = [".git/", ".headway/", ".venv/", "venv/", "__pycache__/", "*.pyc", "node_modules/"]


def snapshot_files(source: Path, home: Path | None = None) -> list[Path]:
    """Files of the app folder that belong in a release, relative to it, sorted: regular
    files only (no socket or fifo), never Headway's `home` when it lies inside the folder (its
    key and store must not end up in a release the app can read)."""
    patterns = list(ALWAYS_IGNORED)
    if home is not None and home.resolve().is_relative_to(source.resolve()):
        patterns.append(f"/{home.resolve().relative_to(source.resolve())}/")
    for name in (".gitignore", ".headwayignore"):
        if (source / name).is_file():
            patterns += (source / name).read_text().splitlines()
    spec = pathspec.GitIgnoreSpec.from_lines(patterns)
    files = []
    for root, dirs, names in os.walk(source):
        rel_root = Path(root).relative_to(source)
        dirs[:] = sorted(d for d in dirs if not spec.match_file(f"{rel_root / d}/"))
        files += [rel_root / n for n in names if not spec.match_file(str(rel_root / n))
                  and (Path(root) / n).is_file()]
    return sorted(files)


def digest(source: Path, files: list[Path], config: str) -> str:
    h = hashlib.sha256(config.encode())
    for rel in files:
        h.update(str(rel).encode() + b"\0")
        h.update(hashlib.sha256((source / rel).read_bytes()).digest())
    return h.hexdigest()


def materialize(source: Path, files: list[Path], dest: Path) -> None:
    """Copy the snapshot to dest atomically: a crash leaves no half-copied release."""
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for rel in files:
        target = tmp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / rel, target)
    tmp.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)


def install_dependencies(app: Path, spec: Spec, cache: Path, *,
                         env: dict[str, str] | None = None) -> list[str]:
    """The process runtime's dependencies for the release folder `app`, installed the way its
    language intends: Python leaves a `.venv` link to its shared virtualenv (on the declared
    interpreter) and runs the build steps; Node/Bun is node.install's. `cache`: where shared
    environments are kept. `env`: the release's variables (default: [env] for the environment
    the release folder belongs to). Returns notes on what was done or skipped."""
    try:
        found = detect(app, command=spec.processes["web"].command)
    except ConfigError:
        if (app / "package.json").exists() or any((app / f).exists() for f in python.MARKERS):
            raise
        return []  # no language Headway knows: the configured command runs as it is
    if found.language in ("node", "bun"):
        from headway.builder.node import install

        install(app, found, cache)
        return []
    if found.language != "python":
        return []
    deps = pydeps.dependencies(app)
    interp = pyinstall.choose(pydeps.wanted(app), pyinstall.interpreters())
    venv = pyinstall.ensure_venv(app, deps, interp, cache)
    link = app / ".venv"
    if link.is_symlink() or link.exists():
        link.unlink() if link.is_symlink() else shutil.rmtree(link)
    link.symlink_to(venv)
    return [f"Python {interp.text}, {deps.source}",
            *pyinstall.build(app, found, spec.environment(_env_name(app)) if env is None else env)]


def _env_name(app: Path) -> str:
    """The environment a release folder belongs to (…/apps/APP/ENV/releases/N)."""
    return app.parent.parent.name if app.parent.name == "releases" else ""
