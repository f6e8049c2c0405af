"""Python apps: how they are recognised (requirements.txt, pyproject.toml with uv.lock /
poetry.lock, Pipfile; FastAPI, Django, Flask, a __main__ script), the version they declare,
their web command, and the Python stages of a generated Containerfile. Reads files only."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from headway.builder.common import HOST, PORT, Detected, exec_form, read
from headway.errors import ConfigError

ENTRYPOINTS = ("main.py", "app.py", "server.py", "wsgi.py", "asgi.py", "application.py")
MARKERS = ("requirements.txt", "pyproject.toml", "Pipfile", "manage.py", *ENTRYPOINTS)
DEFAULT = "3.12"
GENERATED_DEPS = ".headway-requirements.txt"


def detect(folder: Path, name: str) -> Detected:
    reasons = []
    pyproject = read(folder / "pyproject.toml")
    installer = ("uv" if (folder / "uv.lock").exists() else
                 "poetry" if (folder / "poetry.lock").exists() else
                 "pipenv" if (folder / "Pipfile").exists() else "pip")
    source = {"uv": "uv.lock", "poetry": "poetry.lock", "pipenv": "Pipfile"}.get(
        installer, "requirements.txt" if (folder / "requirements.txt").exists()
        else "pyproject.toml" if pyproject else "no dependency file")
    reasons.append(f"dependencies: {source} -> {installer}")
    version, why = _version(folder, pyproject)
    reasons.append(why)
    deps = read(folder / "requirements.txt") + pyproject + read(folder / "Pipfile")
    command, explain = _command(folder, deps)
    reasons.append(explain)
    return Detected(name, command, explain, "python", version, installer, None, reasons)


def _version(folder: Path, pyproject: str) -> tuple[str, str]:
    pinned = read(folder / ".python-version").strip()
    if m := re.match(r"(\d+\.\d+)", pinned):
        return m.group(1), f"Python {m.group(1)} from .python-version"
    if (m := re.search(r"requires-python\s*=\s*[\"']([^\"']+)", pyproject)) and \
            (v := re.search(r"(\d+\.\d+)", m.group(1))):
        return v.group(1), f"Python {v.group(1)} from requires-python {m.group(1)!r}"
    if m := re.search(r"python-(\d+\.\d+)", read(folder / "runtime.txt")):
        return m.group(1), f"Python {m.group(1)} from runtime.txt"
    return DEFAULT, f"Python {DEFAULT}: no version declared (default)"


def _command(folder: Path, deps: str) -> tuple[str, str]:
    """The web command and why; "" and what was looked for when there is none."""
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
    return "", f"Python project, but no web entrypoint (looked for {looked})"


def _app_variable(text: str, cls: str) -> str | None:
    match = re.search(rf"^(\w+)\s*=\s*{cls}\(", text, re.MULTILINE)
    return match.group(1) if match else None


# Containerfile --------------------------------------------------------------------------------
def stages(found: Detected, image: str, source: Path | None) -> str:
    """The Containerfile's stages. `source`: the build context, where a generated dependency
    list from pyproject.toml is written when there is no lock file to install from."""
    tools = "python -m venv /opt/tools && /opt/tools/bin/pip install --no-cache-dir"
    cache = "--mount=type=cache,target=/root/.cache"
    install = {
        "uv": ("COPY pyproject.toml uv.lock ./",
               (f"RUN {cache} {tools} uv && UV_PROJECT_ENVIRONMENT=/venv /opt/tools/bin/uv sync "
               "--frozen --no-dev --no-install-project")),
        "poetry": ("COPY pyproject.toml poetry.lock ./",
                   (f"RUN {cache} {tools} poetry poetry-plugin-export && /opt/tools/bin/poetry "
                   "export --without-hashes -o /tmp/req.txt && /venv/bin/pip install -r "
                   "/tmp/req.txt")),
        "pipenv": ("COPY Pipfile Pipfile.lock* ./",
                   (f"RUN {cache} {tools} pipenv && /opt/tools/bin/pipenv requirements > "
                   "/tmp/req.txt && /venv/bin/pip install -r /tmp/req.txt")),
    }.get(found.installer)
    if install is None:
        deps = "requirements.txt"
        if source and not (source / deps).exists():
            deps = GENERATED_DEPS
            (source / deps).write_text("\n".join(_pyproject_deps(source)) + "\n")
        install = (f"COPY {deps} ./", f"RUN {cache}/pip /venv/bin/pip install -r {deps}")
    return f"""FROM {image} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /venv
WORKDIR /src
{install[0]}
{install[1]}
# the app runs from /venv; the installer itself has no business in the final image
RUN /venv/bin/python -m pip uninstall -y -q pip setuptools wheel 2>/dev/null || true

FROM {image}
RUN groupadd --gid 10001 app && useradd --uid 10001 --gid app --no-create-home \\
    --shell /usr/sbin/nologin app
COPY --from=deps /venv /venv
WORKDIR /app
COPY . .
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOST={HOST} PORT={PORT}
USER 10001:10001
EXPOSE {PORT}
CMD {exec_form(found.command)}
"""


def _pyproject_deps(source: Path) -> list[str]:
    path = source / "pyproject.toml"
    if not path.is_file():
        return []
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return list(data.get("project", {}).get("dependencies", []))
