"""The pipeline's stages, in order, and the app's own lint and test commands: [ci] lint/test
when set ("" = none), else detected from the app's files (ruff or flake8 when configured or
installed; pytest when tests exist; a package.json's real test or lint script, with npm or
Bun). Reads files and PATH only; never runs a command."""

from __future__ import annotations

import configparser
import difflib
import json
import shlex
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path

from headway.errors import ConfigError
from headway.spec.models import CISpec

STAGES = ("lint", "test", "build", "scan", "push", "deploy")
NPM_PLACEHOLDER = "no test specified"  # `npm init`'s test script, which only fails
SKIPPED_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", ".tox", "build", "dist"}


@dataclass(frozen=True)
class Check:
    """The command a lint or test stage runs (None: nothing to run) and why that one."""

    argv: list[str] | None
    why: str


def select(names: tuple[str, ...] | list[str]) -> list[str]:
    """The stages to run, in pipeline order (all when none is named); an unknown name is a
    ConfigError that suggests the closest one."""
    for name in names:
        if name not in STAGES:
            close = difflib.get_close_matches(name, STAGES, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(f"ci run: unknown stage {name!r}",
                              hint=f"{hint}stages, in order: {', '.join(STAGES)}")
    return [s for s in STAGES if s in names] if names else list(STAGES)


def lint_command(source: Path, ci: CISpec) -> Check:
    if ci.lint is not None:
        return _configured("lint", ci.lint)
    if _is_python(source):
        configured = _python_linter_config(source)
        if configured:
            return Check([configured[0], "check", "."] if configured[0] == "ruff"
                         else [configured[0], "."], configured[1])
        for tool in ("ruff", "flake8"):
            if shutil.which(tool):
                return Check([tool, "check", "."] if tool == "ruff" else [tool, "."],
                             f"{tool} is installed")
    scripts = _scripts(source)
    if "lint" in scripts:
        return Check([_node_tool(source), "run", "lint"], "package.json has a lint script")
    return Check(None, "no linter found (ruff or flake8 configured or installed, or a "
                 "package.json lint script)")


def test_command(source: Path, ci: CISpec) -> Check:
    if ci.test is not None:
        return _configured("test", ci.test)
    scripts = _scripts(source)
    if NPM_PLACEHOLDER not in scripts.get("test", NPM_PLACEHOLDER):
        return Check(["bun", "run", "test"] if _is_bun(source) else ["npm", "test"],
                     "package.json has a test script")
    if _is_python(source) and (why := _python_tests(source)):
        return Check(["python3", "-m", "pytest", "-q"], why)
    if _is_bun(source):
        return Check(["bun", "test"], "a Bun app: `bun test` finds its *.test.* files")
    return Check(None, "no tests found (test_*.py files or a pytest configuration, a "
                 "package.json test script, or a Bun app)")


def _configured(stage: str, command: str) -> Check:
    if not command.strip():
        return Check(None, f'[ci] {stage} = "" (no {stage} stage)')
    try:
        return Check(shlex.split(command), f"[ci] {stage}")
    except ValueError as exc:
        raise ConfigError(f"ci.{stage}: {command!r} is not a command line ({exc})",
                          hint=f'e.g. {stage} = "{"ruff check ." if stage == "lint" else "pytest -q"}"'
                          ) from None


def _is_python(source: Path) -> bool:
    return any((source / f).is_file() for f in ("pyproject.toml", "requirements.txt",
                                                  "setup.py", "setup.cfg", "Pipfile")) \
        or any(source.glob("*.py"))


def _is_bun(source: Path) -> bool:
    if any((source / f).is_file() for f in ("bun.lockb", "bun.lock", "bunfig.toml")):
        return True
    return str(_package_json(source).get("packageManager", "")).startswith("bun")


def _node_tool(source: Path) -> str:
    return "bun" if _is_bun(source) else "npm"


def _package_json(source: Path) -> dict[str, object]:
    path = source / "package.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not readable JSON ({exc})") from None
    return data if isinstance(data, dict) else {}


def _scripts(source: Path) -> dict[str, str]:
    scripts = _package_json(source).get("scripts")
    return {str(k): str(v) for k, v in scripts.items()} if isinstance(scripts, dict) else {}


def _pyproject(source: Path) -> dict[str, object]:
    path = source / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not readable TOML ({exc})") from None


def _ini_sections(path: Path) -> list[str]:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return []
    return parser.sections()


def _python_linter_config(source: Path) -> tuple[str, str] | None:
    tool = _pyproject(source).get("tool")
    if isinstance(tool, dict) and "ruff" in tool:
        return "ruff", "[tool.ruff] in pyproject.toml"
    for name in ("ruff.toml", ".ruff.toml"):
        if (source / name).is_file():
            return "ruff", f"{name} exists"
    if (source / ".flake8").is_file():
        return "flake8", ".flake8 exists"
    for name in ("setup.cfg", "tox.ini"):
        if "flake8" in _ini_sections(source / name):
            return "flake8", f"[flake8] in {name}"
    return None


def _python_tests(source: Path) -> str | None:
    tool = _pyproject(source).get("tool")
    if isinstance(tool, dict) and isinstance(tool.get("pytest"), dict):
        return "[tool.pytest] in pyproject.toml"
    if (source / "pytest.ini").is_file() or "tool:pytest" in _ini_sections(source / "setup.cfg"):
        return "pytest is configured"
    for path in _python_files(source, depth=3):
        if path.name.startswith("test_") or path.name.endswith("_test.py"):
            return f"{path.relative_to(source)} is a test file (pytest)"
    return None


def _python_files(folder: Path, *, depth: int) -> list[Path]:
    found = sorted(folder.glob("*.py"))
    if depth > 0:
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            if sub.name not in SKIPPED_DIRS and not sub.name.startswith("."):
                found += _python_files(sub, depth=depth - 1)
    return found
