"""A release artifact for the process runtime: an immutable snapshot of the app folder
(respecting .gitignore and .headwayignore) plus a virtualenv keyed by the app's declared
dependencies, so identical dependencies are installed once and shared read-only."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tomllib
from pathlib import Path

import pathspec

from headway.errors import RuntimeFailure
from headway.runner import run
from headway.spec.models import Spec

ALWAYS_IGNORED = [".git/", ".headway/", ".venv/", "venv/", "__pycache__/", "*.pyc", "node_modules/"]


def snapshot_files(source: Path) -> list[Path]:
    """Files of the app folder that belong in a release, relative to it, sorted."""
    patterns = list(ALWAYS_IGNORED)
    for name in (".gitignore", ".headwayignore"):
        if (source / name).is_file():
            patterns += (source / name).read_text().splitlines()
    spec = pathspec.GitIgnoreSpec.from_lines(patterns)
    files = []
    for root, dirs, names in os.walk(source):
        rel_root = Path(root).relative_to(source)
        dirs[:] = sorted(d for d in dirs if not spec.match_file(f"{rel_root / d}/"))
        files += [rel_root / n for n in names if not spec.match_file(str(rel_root / n))]
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


def requirements(app: Path) -> list[str] | None:
    """The app's declared dependencies, or None when it declares none."""
    req = app / "requirements.txt"
    if req.is_file():
        return [line for line in req.read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    pyproject = app / "pyproject.toml"
    if pyproject.is_file():
        try:
            deps = tomllib.loads(pyproject.read_text()).get("project", {}).get("dependencies")
        except tomllib.TOMLDecodeError as exc:
            raise RuntimeFailure(f"{pyproject}: not valid TOML: {exc}") from exc
        return list(deps) if deps else None
    return None


def ensure_venv(app: Path, cache: Path) -> Path | None:
    """The virtualenv for the app's dependencies, built once per distinct set (uv if present)."""
    deps = requirements(app)
    if deps is None:
        return None
    key = hashlib.sha256(("\n".join(sorted(deps)) + sys.version).encode()).hexdigest()[:16]
    venv = cache / key
    if (venv / ".complete").exists():
        return venv
    tmp = cache / f"{key}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    req = tmp.with_suffix(".txt")
    cache.mkdir(parents=True, exist_ok=True)
    req.write_text("\n".join(deps) + "\n")
    uv = shutil.which("uv") or _beside_python("uv")
    try:
        if uv:
            run([uv, "venv", "--quiet", "--python", sys.executable, str(tmp)], what="uv venv")
            run([uv, "pip", "install", "--quiet", "--python", str(tmp / "bin" / "python"),
                 "-r", str(req)], what="installing the app's dependencies (uv pip install)")
        else:
            run([sys.executable, "-m", "venv", str(tmp)], what="python -m venv")
            run([str(tmp / "bin" / "pip"), "install", "--quiet", "-r", str(req)],
                what="installing the app's dependencies (pip install)")
    finally:
        req.unlink(missing_ok=True)
    (tmp / ".complete").touch()
    shutil.rmtree(venv, ignore_errors=True)
    os.replace(tmp, venv)
    return venv


def install_dependencies(app: Path, spec: Spec, cache: Path) -> None:
    """The process runtime's dependencies for the release folder `app`: a `.venv` link to its
    shared virtualenv (Python). `cache`: where shared environments are kept."""
    del spec  # the language's own install (and the configured command) will need it
    venv = ensure_venv(app, cache)
    if venv:
        (app / ".venv").symlink_to(venv)


def _beside_python(name: str) -> str | None:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else None
