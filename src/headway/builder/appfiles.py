"""Reading an app folder for `headway init`: its code files (no tests, vendored or built
folders) and its declared dependencies (requirements*, pyproject.toml, Pipfile, setup.*,
package.json). Reads text only; never runs or installs anything."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from headway.builder.common import read

SKIP_DIRS = {".git", ".hg", "node_modules", ".venv", "venv", "env", ".env", "__pycache__",
             "dist", "build", ".next", "out", "coverage", ".tox", ".nox", "site-packages",
             "vendor", "tests", "test", "__tests__", "spec", "e2e", "cypress", "docs",
             ".pytest_cache", ".mypy_cache", "static", "public", "fixtures", "examples"}
CODE = (".py", ".js", ".mjs", ".cjs", ".ts", ".mts", ".cts", ".jsx", ".tsx", ".prisma")
MAX_FILES, MAX_BYTES = 3000, 200_000


def code_files(folder: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    stack = [folder]
    while stack and len(out) < MAX_FILES:
        for path in sorted(stack.pop().iterdir()):
            if path.is_dir() and not path.is_symlink():
                if path.name not in SKIP_DIRS and not path.name.startswith("."):
                    stack.append(path)
            elif path.suffix in CODE and not _test_file(path.name) and \
                    path.stat().st_size <= MAX_BYTES:
                out[path.relative_to(folder).as_posix()] = path.read_text(errors="replace")
    return out


def _test_file(name: str) -> bool:
    return bool(re.search(r"^test_|_test\.py$|^conftest\.py$|\.(test|spec)\.[cm]?[jt]sx?$|"
                          r"\.min\.js$|\.d\.ts$", name))


def dependencies(folder: Path) -> tuple[set[str], str]:
    """Declared package names (lowercase), and the files they came from."""
    names: set[str] = set()
    sources = []
    reqs = [*folder.glob("requirements*.txt"), *folder.glob("requirements/*.txt"),
            *folder.glob("requirements*.in")]
    for req in reqs:
        sources.append(req.relative_to(folder).as_posix())
        for line in req.read_text(errors="replace").splitlines():
            if m := re.match(r"^\s*([A-Za-z0-9][\w.-]*)(\[[^\]]*\])?", line):
                names.add(m.group(1).lower().replace("_", "-"))
                names |= {e.strip().lower() for e in (m.group(2) or "").strip("[]").split(",")
                          if e.strip()}
    for name in ("pyproject.toml", "Pipfile"):
        if (folder / name).is_file():
            sources.append(name)
            names |= _toml_dependencies(folder / name)
    for name in ("setup.py", "setup.cfg"):
        if (folder / name).is_file():
            sources.append(name)
            names |= {w.lower() for w in re.findall(r"[\"']([A-Za-z0-9][\w.-]*)",
                                                    read(folder / name))}
    if (folder / "package.json").is_file():
        sources.append("package.json")
        names |= set(package_json(folder).get("deps", []))
    return names, ", ".join(sources)


def _toml_dependencies(path: Path) -> set[str]:
    try:
        data = tomllib.loads(path.read_text(errors="replace"))
    except tomllib.TOMLDecodeError:
        return set()
    project = data.get("project", {})
    lines = [*project.get("dependencies", []),
             *(d for group in project.get("optional-dependencies", {}).values() for d in group)]
    poetry = data.get("tool", {}).get("poetry", {})
    keys = [*poetry.get("dependencies", {}), *data.get("packages", {})]
    for group in poetry.get("group", {}).values():
        keys += list(group.get("dependencies", {}))
    names = {k.lower() for k in keys}
    for line in lines:
        if m := re.match(r"^\s*([A-Za-z0-9][\w.-]*)(\[[^\]]*\])?", str(line)):
            names.add(m.group(1).lower().replace("_", "-"))
            names |= {e.strip().lower() for e in (m.group(2) or "").strip("[]").split(",")}
    return names


def package_json(folder: Path) -> dict[str, list[str] | dict[str, str]]:
    try:
        pkg = json.loads(read(folder / "package.json") or "{}")
    except json.JSONDecodeError:
        return {}
    deps = [*pkg.get("dependencies", {}), *pkg.get("devDependencies", {}),
            *pkg.get("optionalDependencies", {})]
    scripts = pkg.get("scripts", {})
    return {"deps": [d.lower() for d in deps],
            "scripts": scripts if isinstance(scripts, dict) else {}}


def line(body: str, pos: int) -> int:
    """1-based line number of position `pos` in `body`."""
    return body.count("\n", 0, pos) + 1
