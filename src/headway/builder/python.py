"""Python apps: how they are recognised, the version they declare, their production web command
(the server they depend on: gunicorn, uvicorn, hypercorn, daphne, waitress, granian; never a
dev server), their build steps (Django's collectstatic), and the Python stages of a generated
Containerfile. Dependency files and versions are read by pydeps.py. Reads files only; the
only file written is a generated requirements list inside a build context."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from headway.builder import pydeps, pyentry
from headway.builder.common import HOST, PORT, Detected, exec_form, read
from headway.errors import ConfigError

ENTRYPOINTS = ("main.py", "app.py", "server.py", "wsgi.py", "asgi.py", "application.py",
               "autoapp.py")
MARKERS = ("requirements.txt", "pyproject.toml", "Pipfile", "Pipfile.lock", "manage.py",
           *ENTRYPOINTS)
PACKAGE_FILES = ("main.py", "app.py", "server.py", "api.py", "asgi.py", "wsgi.py",
                 "application.py", "__init__.py")
DEFAULT = "3.12"
GENERATED_DEPS = ".headway-requirements.txt"
COLLECTSTATIC = "python manage.py collectstatic --noinput"
ASGI = ("FastAPI", "Starlette", "Quart", "Litestar")
WSGI = ("Flask", "Bottle")
TYPICAL = {"uv": ("pyproject.toml", "uv.lock"), "poetry": ("pyproject.toml", "poetry.lock"),
           "pdm": ("pyproject.toml", "pdm.lock"), "none": ()}
# packages with no wheel that build against a system library: (to build, to run) on Debian
SYSTEM_LIBS = {"psycopg2": (("gcc", "libc6-dev", "libpq-dev"), ("libpq5",)),
               "mysqlclient": (("gcc", "libc6-dev", "pkg-config", "default-libmysqlclient-dev"),
                               ("libmariadb3",))}
# psycopg2-binary's first release with wheels for a Python: an older pin builds from source
BINARY_WHEELS = {"psycopg2-binary": {"3.12": (2, 9, 9), "3.13": (2, 9, 10), "3.14": (2, 9, 11)}}
SERVERS = {"asgi": ("uvicorn", "hypercorn", "daphne", "granian"),
           "wsgi": ("gunicorn", "waitress", "granian", "hypercorn")}


@dataclass(frozen=True)
class Target:
    """A web application object: `module:var` (or a factory), ASGI or WSGI."""

    kind: str  # asgi | wsgi
    module: str
    var: str
    where: str  # the file it was found in, for messages
    factory: bool = False
    app_dir: str = ""  # "src" for a src layout


def detect(folder: Path, name: str) -> Detected:
    deps = pydeps.dependencies(folder)
    reasons = [f"dependencies: {deps.source}"]
    version, why = _version(folder)
    reasons.append(why)
    installed = pydeps.names(folder, deps) if deps.installer != "none" else None
    command, explain = _command(folder, installed)
    reasons.append(explain)
    build, note = _build_steps(folder)
    if note:
        reasons.append(note)
    want = pydeps.wanted(folder)
    return Detected(name, command, explain, "python", version, deps.installer, None, reasons,
                    build, want.spec if want else "", want.source if want else "")


def _version(folder: Path) -> tuple[str, str]:
    want = pydeps.wanted(folder)
    if want is None:
        return DEFAULT, f"Python {DEFAULT}: no version declared (default)"
    minor = pydeps.image_minor(want)
    if minor is None:
        raise ConfigError(f"{folder}: Python {want.spec} (from {want.source}) matches no "
                          "released Python 3 version", hint="declare e.g. \"3.12\"")
    exact = re.fullmatch(r"==(\d+\.\d+)(\.\*|\.\d+)", want.spec)
    note = "" if exact else " (the oldest it allows; the process runtime takes the newest " \
        "installed one that matches)"
    return minor, f"Python {minor} from {want.source} {want.spec!r}{note}"


# the web command -----------------------------------------------------------------------------
def _command(folder: Path, installed: set[str] | None) -> tuple[str, str]:
    """The web command and why; "" and what is missing when there is none."""
    targets = _django(folder) or [t for t in [_find_app(folder, installed or set())] if t]
    if not targets:
        if entry_point := pyentry.find(folder):
            return entry_point.command, entry_point.why
        for entry in ENTRYPOINTS:
            if "__main__" in read(folder / entry):
                return (f"python3 {entry}",
                        f"plain Python entrypoint {entry} (it must listen on $PORT)")
        looked = ", ".join(("manage.py", *ENTRYPOINTS, "app/main.py", "src/PKG/main.py",
                            "PKG/__main__.py", "[project.scripts]"))
        return "", f"Python project, but no web entrypoint (looked for {looked})"
    first = targets[0]
    own = read(folder / first.where)
    if first.where in ENTRYPOINTS and "__main__" in own and "PORT" in own:
        # the app runs its own server on $PORT, with its own settings (graceful shutdown...)
        return f"python3 {first.where}", f"{first.where} runs its app itself on $PORT"
    what = f"{'ASGI' if first.kind == 'asgi' else 'WSGI'} app {first.module}:{first.var}" \
        f"{'()' if first.factory else ''} in {first.where}"
    if installed is None:  # nothing declared: the usual server, said plainly
        server = SERVERS[first.kind][0]
        return (_serve(server, first) or "",
                f"{what}: {server} (no dependency file: add {server} to requirements.txt)")
    for target in targets:
        for server in SERVERS[target.kind]:
            if server in installed and (command := _serve(server, target)):
                return command, f"{what}: {server} (in the dependencies)"
    if (entry_point := pyentry.find(folder)) and entry_point.reads_port:  # its own server
        return entry_point.command, \
            f"{what}, no production server in the dependencies; {entry_point.why}"
    choices = " or ".join(SERVERS[first.kind][:2])
    return "", (f"{what}, but no production server in the dependencies: add {choices} to them, "
                "or set [processes.web] command in headway.toml")


def _serve(server: str, t: Target) -> str | None:
    """The server's command for the target, or None when it cannot serve this layout."""
    spec = f"{t.module}:{t.var}"
    if server == "uvicorn":
        flags = " --factory" if t.factory else ""
        flags += f" --app-dir {t.app_dir}" if t.app_dir else ""
        return f"uvicorn {spec} --host $HOST --port $PORT{flags}"
    if server == "gunicorn":
        where = f" --chdir {t.app_dir}" if t.app_dir else ""
        target = f"'{spec}()'" if t.factory else t.module if t.var == "application" else spec
        worker = " --worker-class uvicorn.workers.UvicornWorker" if t.kind == "asgi" else ""
        return f"gunicorn --bind $HOST:$PORT{where}{worker} {target}"
    if server == "granian":
        flags = (" --factory" if t.factory else "") + \
            (f" --working-dir {t.app_dir}" if t.app_dir else "")
        return f"granian --interface {t.kind} --host $HOST --port $PORT{flags} {spec}"
    if t.app_dir:
        return None
    if server == "hypercorn":
        return f"hypercorn --bind $HOST:$PORT {spec}{'()' if t.factory else ''}"
    if server == "waitress" and t.kind == "wsgi":
        return f"waitress-serve --listen=$HOST:$PORT{' --call' if t.factory else ''} {spec}"
    if server == "daphne" and not t.factory:
        return f"daphne -b $HOST -p $PORT {spec}"
    return None


def _django(folder: Path) -> list[Target]:
    """Django's WSGI application (then its ASGI one), from the settings manage.py names."""
    if not (folder / "manage.py").is_file():
        return []
    settings = _settings_module(folder)
    top = settings.split(".")[0] if settings else ""
    where = f"manage.py ({settings or 'no DJANGO_SETTINGS_MODULE'})"
    wsgi = ""
    if m := re.search(r"""^WSGI_APPLICATION\s*=\s*["']([\w.]+)\.(\w+)["']""",
                      _settings_text(folder, settings) if settings else "", re.MULTILINE):
        wsgi = m.group(1)
    elif (folder / top / "wsgi.py").is_file():
        wsgi = f"{top}.wsgi"
    elif found := sorted(folder.glob("*/wsgi.py")):
        wsgi = f"{found[0].parent.name}.wsgi"
    targets = [Target("wsgi", wsgi, "application", where)] if wsgi else []
    if (folder / top / "asgi.py").is_file():
        targets.append(Target("asgi", f"{top}.asgi", "application", where))
    return targets


def _settings_module(folder: Path) -> str:
    """The settings the app runs with: wsgi.py's default (production), else manage.py's."""
    for name in (*(str(p.relative_to(folder)) for p in sorted(folder.glob("*/wsgi.py"))),
                 "manage.py"):
        m = re.search(r"""DJANGO_SETTINGS_MODULE["']\s*,\s*["']([\w.]+)["']""", read(folder / name))
        if m:
            return m.group(1)
    return ""


def _settings_text(folder: Path, module: str) -> str:
    """The settings module's source; a settings package's every file (base.py, ...), since
    production.py usually star-imports base.py."""
    path = folder / Path(*module.split("."))
    package = path if path.is_dir() else path.parent if path.parent.name == "settings" else None
    if package is not None:
        return "\n".join(read(p) for p in sorted(package.glob("*.py")))
    return read(path.with_suffix(".py"))


_VAR = re.compile(rf"^(\w+)\s*(?::[^=\n]+)?=\s*(?:[\w.]+\.)?({'|'.join(ASGI + WSGI)})\(",
                  re.MULTILINE)


def _find_app(folder: Path, installed: set[str]) -> Target | None:
    for path, module, app_dir in _candidates(folder):
        text = read(path)
        where = str(path.relative_to(folder))
        if m := _VAR.search(text):
            return Target("asgi" if m.group(2) in ASGI else "wsgi", module, m.group(1), where,
                          app_dir=app_dir)
        kind = _kind(text, installed)
        if m := re.search(r"^(\w+)\s*=\s*(?:[\w.]+\.)?create_app\(", text, re.MULTILINE):
            return Target(kind, module, m.group(1), where, app_dir=app_dir)
        if re.search(r"^def create_app\(", text, re.MULTILINE) and ("flask" in text.lower()
                                                                    or "fastapi" in text.lower()):
            return Target(kind, module, "create_app", where, factory=True, app_dir=app_dir)
        # `app = get_application()`: a module that imports a framework and names its app
        if _FRAMEWORK.search(text) and (m := re.search(r"^(app|application)\s*=\s*\w[\w.]*\(",
                                                         text, re.MULTILINE)):
            return Target(kind, module, m.group(1), where, app_dir=app_dir)
    return None


_FRAMEWORK = re.compile(r"^\s*(from|import) (fastapi|starlette|quart|litestar|flask|bottle|falcon)\b",
                        re.MULTILINE)


def _kind(text: str, installed: set[str]) -> str:
    """ASGI or WSGI, for an app a factory makes: from the imports, else the dependencies."""
    if re.search(r"^\s*(from|import) (fastapi|starlette|quart|litestar)", text, re.MULTILINE):
        return "asgi"
    if re.search(r"^\s*(from|import) (flask|bottle)", text, re.MULTILINE):
        return "wsgi"
    return "wsgi" if installed & {"flask", "bottle", "falcon"} else "asgi"


def _candidates(folder: Path) -> list[tuple[Path, str, str]]:
    """(file, its module, the folder to import from) where a web app usually lives."""
    found = [(folder / e, e.removesuffix(".py"), "") for e in ENTRYPOINTS]
    for base, app_dir in ((folder, ""), (folder / "src", "src")):
        if not base.is_dir():
            continue
        for package in sorted(p for p in base.iterdir() if (p / "__init__.py").is_file()
                              or p.name == "app" and p.is_dir()):
            if package.name in ("tests", "test", "migrations", "docs"):
                continue
            for name in PACKAGE_FILES:
                module = package.name if name == "__init__.py" else \
                    f"{package.name}.{name.removesuffix('.py')}"
                found.append((package / name, module, app_dir))
    return [c for c in found if c[0].is_file()]


# build steps ---------------------------------------------------------------------------------
def _build_steps(folder: Path) -> tuple[list[str], str]:
    """Django's collectstatic when the settings set STATIC_ROOT, and a note on it."""
    settings = _settings_module(folder) if (folder / "manage.py").is_file() else ""
    if not settings:
        return [], ""
    text = _settings_text(folder, settings)
    if not re.search(r"^STATIC_ROOT\s*=", text, re.MULTILINE):
        return [], "Django: no STATIC_ROOT in the settings, so no collectstatic"
    needs = required_env(text)
    extra = f"; it needs {', '.join(needs)} from the environment" if needs else ""
    return [COLLECTSTATIC], f"build: {COLLECTSTATIC} (STATIC_ROOT set in {settings}){extra}"


def required_env(text: str) -> list[str]:
    """Variables settings read with no default: os.environ["X"], env("X"), env.db("X") and
    the other django-environ readers, config("X") (python-decouple), and os.environ.get("X")
    used at once (`.split(" ")` of None fails just the same)."""
    found = re.findall(r"""os\.environ\[\s*["'](\w+)["']\s*\]""", text)
    found += re.findall(r"""os\.(?:environ\.get|getenv)\(\s*["'](\w+)["']\s*\)\.""", text)
    found += re.findall(r"""(?<![\w.])(?:env(?:\.\w+)?|config)\(\s*["'](\w+)["']\s*\)""", text)
    return sorted(set(found))


def django_settings(folder: Path) -> tuple[str, str]:
    """(settings module, its source text) of a Django app, or ("", "")."""
    settings = _settings_module(folder) if (folder / "manage.py").is_file() else ""
    return settings, _settings_text(folder, settings) if settings else ""


# Containerfile --------------------------------------------------------------------------------
def stages(found: Detected, image: str, source: Path | None) -> str:
    """The Containerfile's stages. `source`: the build context, where a generated requirements
    list is written when the dependencies are not in a requirements file of the app."""
    deps = pydeps.dependencies(source) if source else pydeps.Deps(
        found.installer, TYPICAL.get(found.installer, ("requirements.txt",)), found.installer)
    copy, install = _install_lines(deps, source)
    build = _build_stage(found, source)
    compile_with, run_with = _system_packages(deps, source, found.version)
    return f"""FROM {image} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
{compile_with}RUN python -m venv /venv
WORKDIR /src
{copy}{install}
# the app runs from /venv; the installer itself has no business in the final image (setuptools
# stays: below 3.12 every venv has it, and apps import pkg_resources without declaring it)
RUN /venv/bin/python -m pip uninstall -y -q {" ".join(_installer_only(deps, source))} 2>/dev/null || true
{build}
FROM {image}
{run_with}RUN groupadd --gid 10001 app && useradd --uid 10001 --gid app --no-create-home \\
    --shell /usr/sbin/nologin app
COPY --from=deps /venv /venv
WORKDIR /app
{"COPY --from=build /app /app" if "AS build" in build else "COPY . ."}
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOST={HOST} PORT={PORT}
USER 10001:10001
EXPOSE {PORT}
CMD {exec_form(found.command)}
"""


def _system_packages(deps: pydeps.Deps, source: Path | None,
                     python: str = "") -> tuple[str, str]:
    """apt-get lines for packages pip builds from source against a system library (psycopg2
    has no wheel without libpq; psycopg2-binary pinned to a release older than its wheels for
    the image's Python): the compiler and headers in the deps stage, the library alone in the
    final image. Empty when the app needs none."""
    named = pydeps.names(source, deps) if source else set()
    if source and "psycopg2-binary" in named and _older_than_wheels(
            pydeps.pin(source, deps, "psycopg2-binary"), "psycopg2-binary", python):
        named = named | {"psycopg2"}
    build = sorted({p for name in named & set(SYSTEM_LIBS) for p in SYSTEM_LIBS[name][0]})
    run = sorted({p for name in named & set(SYSTEM_LIBS) for p in SYSTEM_LIBS[name][1]})
    if not build:
        return "", ""
    why = ", ".join(sorted(named & set(SYSTEM_LIBS)))
    compile_with, run_with = (
        f"# {why}: built from source against a system library\nRUN apt-get update && "
        f"apt-get install -y --no-install-recommends {' '.join(p)} && rm -rf /var/lib/apt/lists/*\n"
        for p in (build, run))
    return compile_with, run_with


def _older_than_wheels(pinned: str | None, package: str, python: str) -> bool:
    first = BINARY_WHEELS[package].get(".".join(python.split(".")[:2]))
    if not pinned or not first:
        return False
    try:
        return tuple(int(n) for n in pinned.split(".")[:3]) < first
    except ValueError:
        return False


def _installer_only(deps: pydeps.Deps, source: Path | None) -> list[str]:
    """pip and wheel, unless the app's own dependencies name them."""
    named = pydeps.names(source, deps) if source else set()
    return [p for p in ("pip", "wheel") if p not in named]


def _install_lines(deps: pydeps.Deps, source: Path | None) -> tuple[str, str]:
    """COPY lines for the dependency files (paths kept: -r requirements/base.txt works) and
    the RUN that installs them into /venv the way their tool intends."""
    cache = "--mount=type=cache,target=/root/.cache"
    # the tools (uv, then poetry/pdm through uv: seconds, where pip takes minutes to resolve
    # them) live in /opt/tools, which the final stage never copies; uv trusts the system's CAs
    uv = "UV_NATIVE_TLS=1 UV_PYTHON_DOWNLOADS=never /opt/tools/bin/uv"
    tools = (f"RUN {cache} python -m venv /opt/tools && /opt/tools/bin/pip install -q uv && "
             f"{uv} pip install -q --python /opt/tools/bin/python")
    export = f"-o /tmp/req.txt && {uv} pip install --python /venv/bin/python -r /tmp/req.txt"
    files = deps.files
    if deps.generated is not None:
        if source:
            (source / GENERATED_DEPS).write_text("\n".join(deps.generated) + "\n")
        files = (GENERATED_DEPS,)
    copy = "".join(f"COPY {f} {f}\n" for f in files)
    if source and pydeps.local_paths(source, deps):
        # `-e .` installs the code itself: from /app, where the final stage puts it
        copy = "# the requirements install the app's own folders: they need the code\n" \
            "WORKDIR /app\nCOPY . .\n"
    run = {
        "uv": (f"RUN {cache} python -m venv /opt/tools && /opt/tools/bin/pip install -q uv && "
               f"UV_PROJECT_ENVIRONMENT=/venv {uv} sync --frozen --no-dev --no-install-project"),
        "poetry": (f"{tools} poetry poetry-plugin-export && /opt/tools/bin/poetry export "
                   f"--only main --without-hashes {export}"),
        "pdm": (f"{tools} 'pdm[locked]' && PDM_CHECK_UPDATE=false /opt/tools/bin/pdm export "
                f"--prod --no-hashes -f requirements {export}"),
        "none": "# no dependency file: an empty virtualenv",
    }.get(deps.installer) or f"RUN {cache}/pip /venv/bin/pip install -r {files[0]}"
    return copy, run


def _build_stage(found: Detected, source: Path | None) -> str:
    """A stage that runs the build steps (collectstatic) over the source, when there are any
    it can run without the app's secrets; "" otherwise."""
    if not found.build or source is None:
        return ""
    settings, text = django_settings(source)
    needs = required_env(text)
    if needs:  # a build has no [env] nor secrets: collectstatic would fail on them
        return (f"# {COLLECTSTATIC} is not run here: the settings need "
                f"{', '.join(needs)} from the environment\n")
    steps = " && ".join(f"/venv/bin/{s}" for s in found.build)
    return f"""
FROM deps AS build
WORKDIR /app
COPY . .
RUN DJANGO_SETTINGS_MODULE={settings} {steps}
"""
