"""Detect how an app is built and started from its files, for `headway init` and `headway
build`: Python (requirements.txt, pyproject.toml with uv.lock / poetry.lock, Pipfile), Node
(package.json with npm / pnpm / yarn), Bun, or a Containerfile/Dockerfile used as is; the
runtime version the project declares; the web command. Reads files only; never runs the app.
Commands listen on $HOST:$PORT, which Headway sets (127.0.0.1 for processes, 0.0.0.0 in a
container)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from headway.errors import ConfigError

ENTRYPOINTS = ("main.py", "app.py", "server.py", "wsgi.py", "asgi.py", "application.py")
PYTHON_DEFAULT, NODE_DEFAULT, BUN_DEFAULT = "3.12", "22", "1"


@dataclass(frozen=True)
class Detected:
    name: str
    command: str
    explain: str
    language: str = "python"  # python | node | bun | container
    version: str = PYTHON_DEFAULT
    installer: str = "pip"  # pip | uv | poetry | pipenv | npm | pnpm | yarn | bun | none
    containerfile: str | None = None  # an existing Containerfile/Dockerfile, used as is
    reasons: list[str] = field(default_factory=list)


def detect(folder: Path) -> Detected:
    name = re.sub(r"[^a-z0-9-]+", "-", folder.resolve().name.lower()).strip("-") or "app"
    if not name[0].isalpha():
        name = f"app-{name}"
    own = next((f for f in ("Containerfile", "Dockerfile") if (folder / f).exists()), None)
    package = folder / "package.json"
    if package.exists():
        found = _node(folder, name, package)
    elif any((folder / f).exists() for f in ("requirements.txt", "pyproject.toml", "Pipfile",
                                             "manage.py", *ENTRYPOINTS)):
        found = _python(folder, name)
    elif own:
        return Detected(name, "", f"{own}, used as is", "container", "", "none", own,
                        [f"{own} found: built as is"])
    else:
        raise ConfigError(f"{folder}: no app found (looked for package.json, requirements.txt, "
                          f"pyproject.toml, Pipfile, manage.py, {', '.join(ENTRYPOINTS)}, "
                          "Containerfile, Dockerfile)",
                          hint="write headway.toml by hand: [processes.web] command = \"...\"")
    if own:
        return Detected(found.name, found.command, f"{found.explain}; {own} used as is",
                        found.language, found.version, found.installer, own,
                        [*found.reasons, f"{own} found: built as is instead of a generated one"])
    return found


# Python ---------------------------------------------------------------------------------------
def _python(folder: Path, name: str) -> Detected:
    reasons = []
    pyproject = _read(folder / "pyproject.toml")
    installer = ("uv" if (folder / "uv.lock").exists() else
                 "poetry" if (folder / "poetry.lock").exists() else
                 "pipenv" if (folder / "Pipfile").exists() else "pip")
    source = {"uv": "uv.lock", "poetry": "poetry.lock", "pipenv": "Pipfile"}.get(
        installer, "requirements.txt" if (folder / "requirements.txt").exists()
        else "pyproject.toml" if pyproject else "no dependency file")
    reasons.append(f"dependencies: {source} -> {installer}")
    version, why = _python_version(folder, pyproject)
    reasons.append(why)
    deps = _read(folder / "requirements.txt") + pyproject + _read(folder / "Pipfile")
    command, explain = _python_command(folder, deps)
    reasons.append(explain)
    return Detected(name, command, explain, "python", version, installer, None, reasons)


def _python_version(folder: Path, pyproject: str) -> tuple[str, str]:
    pinned = _read(folder / ".python-version").strip()
    if m := re.match(r"(\d+\.\d+)", pinned):
        return m.group(1), f"Python {m.group(1)} from .python-version"
    if (m := re.search(r"requires-python\s*=\s*[\"']([^\"']+)", pyproject)) and \
            (v := re.search(r"(\d+\.\d+)", m.group(1))):
        return v.group(1), f"Python {v.group(1)} from requires-python {m.group(1)!r}"
    if m := re.search(r"python-(\d+\.\d+)", _read(folder / "runtime.txt")):
        return m.group(1), f"Python {m.group(1)} from runtime.txt"
    return PYTHON_DEFAULT, f"Python {PYTHON_DEFAULT}: no version declared (default)"


def _python_command(folder: Path, deps: str) -> tuple[str, str]:
    if (folder / "manage.py").exists():
        wsgi = next(folder.glob("*/wsgi.py"), None)
        if wsgi:
            module = f"{wsgi.parent.name}.wsgi"
            return (f"gunicorn --bind $HOST:$PORT {module}",
                    f"Django project (manage.py, {wsgi.relative_to(folder)}): gunicorn")
    for entry in ENTRYPOINTS:
        path = folder / entry
        if not path.exists():
            continue
        text = path.read_text(errors="replace")
        module = entry.removesuffix(".py")
        var = _app_variable(text, "FastAPI") or _app_variable(text, "Starlette")
        if var or "fastapi" in deps.lower() and "FastAPI(" in text:
            if "__main__" in text and "PORT" in text:
                return f"python3 {entry}", f"FastAPI app in {entry} that runs itself on $PORT"
            return (f"uvicorn {module}:{var or 'app'} --host $HOST --port $PORT",
                    f"FastAPI app `{var or 'app'}` in {entry}: uvicorn")
        var = _app_variable(text, "Flask")
        if var:
            return (f"gunicorn --bind $HOST:$PORT {module}:{var}",
                    f"Flask app `{var}` in {entry}: gunicorn")
        if "__main__" in text:
            return f"python3 {entry}", f"plain Python entrypoint {entry} (it must listen on $PORT)"
    looked = ", ".join(("manage.py", *ENTRYPOINTS))
    raise ConfigError(f"{folder}: Python project, but no web entrypoint (looked for {looked})",
                      hint="write headway.toml by hand: [processes.web] command = \"...\"")


# Node and Bun -----------------------------------------------------------------------------
def _node(folder: Path, name: str, package: Path) -> Detected:
    try:
        pkg = json.loads(package.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{package}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    bun = any((folder / f).exists() for f in ("bun.lock", "bun.lockb"))
    installer = ("bun" if bun else "pnpm" if (folder / "pnpm-lock.yaml").exists() else
                 "yarn" if (folder / "yarn.lock").exists() else "npm")
    lock = {"bun": "bun.lock", "pnpm": "pnpm-lock.yaml", "yarn": "yarn.lock"}.get(
        installer, "package-lock.json" if (folder / "package-lock.json").exists()
        else "package.json")
    reasons = [f"dependencies: {lock} -> {installer}"]
    version, why = (BUN_DEFAULT, f"Bun {BUN_DEFAULT}") if bun else _node_version(folder, pkg)
    reasons.append(why)
    runner = "bun" if bun else "node"
    start = pkg.get("scripts", {}).get("start")
    if start:
        # `node server.js` is run directly: npm would sit between the signal and the app
        direct = re.fullmatch(r"(node|bun)\s+[\w./-]+", start.strip())
        command = start.strip() if direct else f"{installer} run start"
        explain = f"the start script of package.json ({start!r})"
    elif pkg.get("main") or (folder / "index.js").exists():
        entry = pkg.get("main") or "index.js"
        command, explain = f"{runner} {entry}", f"package.json main: {entry}" \
            if pkg.get("main") else "index.js"
    else:
        raise ConfigError(f"{package}: no start script, no main, no index.js",
                          hint='add "scripts": {"start": "node server.js"} to package.json')
    reasons.append(f"command: {command} ({explain}; it must listen on $PORT)")
    language = "bun" if bun else "node"
    return Detected(name, command, f"{language.title()} app: {explain}", language, version,
                    installer, None, reasons)


def _node_version(folder: Path, pkg: dict[str, object]) -> tuple[str, str]:
    for dotfile in (".nvmrc", ".node-version"):
        if m := re.match(r"v?(\d+)", _read(folder / dotfile).strip()):
            return m.group(1), f"Node {m.group(1)} from {dotfile}"
    engines = pkg.get("engines")
    wanted = engines.get("node") if isinstance(engines, dict) else None
    if isinstance(wanted, str) and (m := re.search(r"(\d+)", wanted)):
        return m.group(1), f"Node {m.group(1)} from engines.node {wanted!r}"
    return NODE_DEFAULT, f"Node {NODE_DEFAULT}: no version declared (default)"


def render_toml(found: Detected, *, port: int) -> str:
    command = found.command or "# the image's own CMD is not used: set the command here"
    return f'''# headway.toml, written by `headway init` ({found.explain}).
# Reference: every key, its type and default, is in the README ("Config reference").

[app]
name = "{found.name}"
runtime = "auto"             # auto | process | podman | docker | kubernetes

[processes.web]              # the process that receives HTTP traffic; gets $HOST and $PORT
command = "{command}"
replicas = 2

[processes.web.health]
path = "/up"                 # must answer 2xx when the instance can serve
# interval = "1s"
# timeout = "2s"
# healthy_threshold = 2

[deploy]
strategy = "blue-green"      # rolling | blue-green | canary
# timeout = "60s"            # a release not healthy within this fails
# drain_timeout = "30s"
# keep_previous = "10m"      # previous release stays warm: rollback is a traffic switch

[router]
port = {port}                # where users' HTTP traffic arrives

[env]
# LOG_LEVEL = "info"
# [env.staging]              # overrides for `--env staging`
# LOG_LEVEL = "debug"
'''


def _app_variable(text: str, cls: str) -> str | None:
    match = re.search(rf"^(\w+)\s*=\s*{cls}\(", text, re.MULTILINE)
    return match.group(1) if match else None


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""
