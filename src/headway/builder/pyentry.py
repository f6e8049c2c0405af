"""Python apps that start their own server: a package run as a module (`python -m pkg`, from
pkg/__main__.py or src/pkg/__main__.py) or a console script of pyproject.toml
([project.scripts], [tool.poetry.scripts]) whose function starts it (web.run_app, uvicorn.run,
app.run(port=...), serve_forever...), followed through the calls it makes, a few levels deep.
The command runs the module or the function from the app's folder, so nothing needs installing
(a src layout gets PYTHONPATH=src). Reads and parses files only; never imports or runs the
app's code."""

from __future__ import annotations

import ast
import shlex
from dataclasses import dataclass
from pathlib import Path

from headway.builder.common import read
from headway.builder.pydeps import load_toml

ROOTS = ("", "src")
SKIP = ("tests", "test", "migrations", "docs")
# calls that start a server whatever their arguments
ALWAYS = {"run_app", "serve_forever", "run_simple", "TCPSite", "uvicorn.run", "granian.Granian"}
# `app.run(...)` / `serve(...)` start one when they are given an address
ADDRESSED = {"run", "serve"}
ADDRESS = {"host", "port", "listen", "bind"}
DEPTH = 4


@dataclass(frozen=True)
class Entry:
    """How to start an app that runs its own server, and why that was chosen."""

    command: str
    why: str
    reads_port: bool


@dataclass(frozen=True)
class _Module:
    path: Path
    name: str  # dotted
    app_dir: str  # "src" for a src layout


def find(folder: Path) -> Entry | None:
    """The first `python -m` package, then console script, that starts a server."""
    for package in _main_packages(folder):
        if found := _starts(folder, package, None):
            prefix = _prefix(package.app_dir)
            name = package.name.removesuffix(".__main__")
            return Entry(f"{prefix}python3 -m {name}",
                         f"`python -m {name}` ({_rel(folder, package.path)}) starts its "
                         f"server{_port_note(found)}", found[1])
    for script, target in scripts(folder):
        module_name, _, func = target.partition(":")
        module = _module(folder, module_name)
        if module is None or not func.isidentifier():
            continue
        if found := _starts(folder, module, func):
            code = f"import sys; from {module_name} import {func}; sys.exit({func}())"
            return Entry(f"{_prefix(module.app_dir)}python3 -c {shlex.quote(code)}",
                         f"console script {script} = {target!r} (pyproject.toml) starts its "
                         f"server{_port_note(found)}; run from the code, not installed",
                         found[1])
    return None


def scripts(folder: Path) -> list[tuple[str, str]]:
    """(name, "module:function") of [project.scripts] and [tool.poetry.scripts]."""
    pyproject = load_toml(folder / "pyproject.toml")
    found: list[tuple[str, str]] = []
    declared = [pyproject.get("project", {}).get("scripts", {}),
                pyproject.get("tool", {}).get("poetry", {}).get("scripts", {})]
    for table in declared:
        for name, value in table.items() if isinstance(table, dict) else ():
            if isinstance(value, dict):  # Poetry: {callable = "..."} or {reference = ...}
                value = value.get("callable") or (value.get("reference")
                                                  if value.get("type") == "console" else None)
            if isinstance(value, str) and ":" in value:
                found.append((name, value.split("[")[0].strip()))
    return found


def _main_packages(folder: Path) -> list[_Module]:
    found = []
    for app_dir in ROOTS:
        base = folder / app_dir if app_dir else folder
        if not base.is_dir():
            continue
        for package in sorted(p for p in base.iterdir() if (p / "__main__.py").is_file()):
            if package.name not in SKIP and package.name.isidentifier():
                found.append(_Module(package / "__main__.py", f"{package.name}.__main__",
                                     app_dir))
    return found


def _module(folder: Path, name: str, app_dir: str | None = None) -> _Module | None:
    """Where a dotted module's source is, in the app's folder or its src/."""
    parts = name.split(".")
    for root in ROOTS if app_dir is None else (app_dir,):
        base = folder / root if root else folder
        for path in (base.joinpath(*parts).with_suffix(".py"),
                     base.joinpath(*parts, "__init__.py")):
            if path.is_file():
                return _Module(path, name, root)
    return None


def _starts(folder: Path, module: _Module, func: str | None,
            seen: set[tuple[Path, str | None]] | None = None,
            depth: int = 0) -> tuple[str, bool] | None:
    """Whether running `func` of `module` (its top-level code when None) starts a server:
    (where the call is, whether the code on the way reads PORT), else None."""
    seen = set() if seen is None else seen
    if depth > DEPTH or (module.path, func) in seen:
        return None
    seen.add((module.path, func))
    text = read(module.path)
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    body = _body(tree, func)
    if body is None:
        return None
    reads_port = "PORT" in text
    imported = _imports(tree, module)
    for call in (n for stmt in body for n in ast.walk(stmt) if isinstance(n, ast.Call)):
        name = _dotted(call.func)
        if _is_server(name, call):
            return f"{_rel(folder, module.path)}:{call.lineno}", reads_port
        target = _callee(folder, module, name, tree, imported)
        if target and (found := _starts(folder, target[0], target[1], seen, depth + 1)):
            return found[0], found[1] or reads_port
    return None


def _callee(folder: Path, module: _Module, name: str, tree: ast.Module,
            imported: dict[str, tuple[str, str]]) -> tuple[_Module, str] | None:
    """The module and function a call runs: `f()` defined here or imported (`from .app
    import f`), or `app.f()` after `from pkg import app`."""
    if name in _defined(tree):
        return module, name
    head, _, func = name.rpartition(".")
    if not head and name in imported:
        where, func = imported[name]
    elif head in imported and "." not in head:
        where = ".".join(part for part in imported[head] if part)
    else:
        return None
    found = _module(folder, where, module.app_dir)
    return (found, func) if found else None


def _body(tree: ast.Module, func: str | None) -> list[ast.stmt] | None:
    if func is None:  # a module run as a script: its top-level code, not what it defines
        return [s for s in tree.body
                if not isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)]
    return next((s.body for s in tree.body if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef)
                 and s.name == func), None)


def _defined(tree: ast.Module) -> set[str]:
    return {s.name for s in tree.body if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef)}


def _imports(tree: ast.Module, module: _Module) -> dict[str, tuple[str, str]]:
    """`from X import f (as g)` at the top of a module: g -> (X made absolute, f)."""
    package = module.name if module.path.name == "__init__.py" else \
        module.name.rpartition(".")[0]
    found = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.ImportFrom):
            where = stmt.module or ""
            if stmt.level:
                base = package.split(".")
                base = base[:len(base) - stmt.level + 1]
                where = ".".join([*base, *([where] if where else [])])
            for alias in stmt.names:
                found[alias.asname or alias.name] = (where, alias.name)
    return found


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else node.attr
    return ""


def _is_server(name: str, call: ast.Call) -> bool:
    last = name.rsplit(".", 1)[-1]
    if name in ALWAYS or last in ALWAYS:
        return True
    return last in ADDRESSED and not name.startswith(("asyncio.", "trio.", "anyio.",
                                                      "subprocess.")) \
        and any(k.arg in ADDRESS for k in call.keywords)


def _prefix(app_dir: str) -> str:
    # `python -m` imports from the working folder; a src layout's packages are one below
    return f"env PYTHONPATH={app_dir} " if app_dir else ""


def _port_note(found: tuple[str, bool]) -> str:
    where, reads_port = found
    return f" at {where}" if reads_port else \
        f" at {where}, but reads no PORT: it must listen on $PORT"


def _rel(folder: Path, path: Path) -> str:
    return str(path.relative_to(folder))
