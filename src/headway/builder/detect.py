"""Detect a Python web app's framework and entrypoint from its files, for `headway init`.
Reads files only; never runs the app."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from headway.errors import ConfigError

ENTRYPOINTS = ("main.py", "app.py", "server.py", "wsgi.py", "asgi.py", "application.py")


@dataclass(frozen=True)
class Detected:
    name: str
    command: str
    explain: str


def detect(folder: Path) -> Detected:
    name = re.sub(r"[^a-z0-9-]+", "-", folder.resolve().name.lower()).strip("-") or "app"
    if not name[0].isalpha():
        name = f"app-{name}"
    deps = _read(folder / "requirements.txt") + _read(folder / "pyproject.toml")
    manage = folder / "manage.py"
    if manage.exists():
        wsgi = next(folder.glob("*/wsgi.py"), None)
        if wsgi:
            module = f"{wsgi.parent.name}.wsgi"
            return Detected(name, f"gunicorn --bind 127.0.0.1:$PORT {module}",
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
                return Detected(name, f"python3 {entry}", f"FastAPI app in {entry} that runs "
                                "itself on $PORT")
            return Detected(name, f"uvicorn {module}:{var or 'app'} --host 127.0.0.1 --port $PORT",
                            f"FastAPI app `{var or 'app'}` in {entry}: uvicorn")
        var = _app_variable(text, "Flask")
        if var:
            return Detected(name, f"gunicorn --bind 127.0.0.1:$PORT {module}:{var}",
                            f"Flask app `{var}` in {entry}: gunicorn")
        if "__main__" in text:
            return Detected(name, f"python3 {entry}",
                            f"plain Python entrypoint {entry} (it must listen on $PORT)")
    looked = ", ".join(("manage.py", *ENTRYPOINTS))
    raise ConfigError(f"{folder}: no Python web app found (looked for {looked})",
                      hint="write headway.toml by hand: [processes.web] command = \"...\"")


def render_toml(found: Detected, *, port: int) -> str:
    return f'''# headway.toml, written by `headway init` ({found.explain}).
# Reference: every key, its type and default, is in the README ("Config reference").

[app]
name = "{found.name}"
runtime = "auto"             # auto | process | podman | docker | kubernetes

[processes.web]              # the process that receives HTTP traffic; gets $PORT
command = "{found.command}"
replicas = 2

[processes.web.health]
path = "/up"                 # must answer 2xx when the instance can serve
# interval = "1s"
# timeout = "2s"
# healthy_threshold = 2

[deploy]
strategy = "blue-green"      # rolling | blue-green
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
