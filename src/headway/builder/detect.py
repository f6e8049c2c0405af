"""Detect how an app is built and started from its files, for `headway init`, `headway build`
and every deploy: the language (python.py, node.py), or a Containerfile/Dockerfile used as is;
the runtime version the project declares; the web command (a Procfile `web:` line first, unless
it runs a dev server). A command configured in headway.toml always wins: detection only fills
the gaps. Reads files only; never runs the app, never rewrites a user's command beyond adding
the $HOST/$PORT binding a server lets us add.
Commands listen on $HOST:$PORT, which Headway sets (127.0.0.1 for processes, 0.0.0.0 in a
container)."""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from headway.builder import node, python
from headway.builder.common import Detected, read
from headway.errors import ConfigError

if TYPE_CHECKING:
    from headway.builder.needs import Accessory, Needs

__all__ = ["Detected", "bind_host", "detect", "dev_server", "own_command", "procfile",
           "render_toml"]

# the app's own build files; a production variant first (Dockerfile beside it is often the
# development one: testdrivenio/django-on-docker's flushes the database at every start)
OWN = ("Containerfile.prod", "Dockerfile.prod", "Dockerfile.production", "Containerfile",
       "Dockerfile")
# written when no web command was found: valid, and says what to do if deployed as is
PLACEHOLDER = "sh -c 'echo set [processes.web] command in headway.toml >&2; exit 1'"
# besides node.DEV (watchers, framework dev servers): Python's and package managers' own
DEV_SERVER = re.compile(r"\brunserver\b|\bflask\s+run\b|--reload\b|--debug\b"
                        r"|\b(npm|yarn|pnpm|bun)\s+(run\s+)?dev\b")
MIGRATE = re.compile(r"manage\.py\s+migrate\b|\bflask\s+db\s+upgrade\b|\balembic\s+upgrade\b"
                     r"|\bprisma\s+migrate\s+deploy\b|\bknex\s+migrate\b"
                     r"|\b(npm|yarn|pnpm|bun)\s+(run\s+)?(db:)?migrate\b")
# steps that write the database without being migrations: they belong to the release too,
# never to the build (no database there): loaddata, a seed
DATA = re.compile(r"manage\.py\s+(loaddata|createcachetable|seed\w*|populate\w*)\b|"
                  r"\bflask\b.*\s(seed\w*|init-db|init_db|create-db|create_db)\b|\bseed\w*\.(py|js)\b")
SHELL = re.compile(r"&&|\|\||[;|<>`]|\$\(|\$\{\w+:|^\s*(cd|export|source|\.)\s|^\s*\w+=\S")


def app_name(folder: Path) -> str:
    """An app name from a folder's name: lower case, letters, digits and dashes, at most 40,
    cut at a dash rather than within a word (azure-django-postgres-flexible-appservice)."""
    name = re.sub(r"[^a-z0-9-]+", "-", folder.resolve().name.lower()).strip("-") or "app"
    return _at_most_40(name if name[0].isalpha() else f"app-{name}")


def _at_most_40(name: str) -> str:
    if len(name) <= 40:
        return name
    cut = name[:41].rpartition("-")[0].rstrip("-")
    return cut if len(cut) >= 20 else name[:40].rstrip("-")


def apps_below(folder: Path) -> list[Path]:
    """The folders right below `folder` that hold a Python or Node app (a repository whose
    app is in app/ or backend/, beside nginx/ and docs/)."""
    found = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
                      and p.name != "node_modules"):
        try:
            if detect(sub, partial=True).language != "container":
                found.append(sub)
        except (ConfigError, OSError):
            continue
    return found


def detect(folder: Path, *, command: str | None = None, containerfile: str | None = None,
           partial: bool = False) -> Detected:
    """What the app in `folder` is. `command`: the web command from headway.toml, which wins
    over whatever would be detected (and makes a missing entrypoint no error). `partial`
    (init): no web command found is no error; the result's command is "".
    `containerfile`: [build] containerfile: "generate" ignores the app's own file, a path uses
    that file; default (None): the app's Containerfile or Dockerfile if it has one."""
    name = app_name(folder)
    own = _own_file(folder, containerfile)
    procs = procfile(folder)
    if (folder / "package.json").exists():
        found = node.detect(folder, name)
    elif any((folder / f).exists() for f in python.MARKERS) and not _tooling_only(folder):
        found = python.detect(folder, name)
    elif own or procs.get("web"):
        cmd = command or _usable(procs.get("web")) or own_command(folder / own if own else None)
        why = f"{own}, used as is" if own else "Procfile"
        return Detected(name, cmd, why, "container" if own else "procfile", "", "none", own,
                        [f"{own} found: built as is" if own else "Procfile found"])
    else:
        raise ConfigError(f"{folder}: no app found (looked for package.json, "
                          f"{', '.join(python.MARKERS)}, Procfile, Containerfile, Dockerfile)",
                          hint="write headway.toml by hand: [processes.web] command = \"...\"")
    found = _with_procfile(found, procs.get("web"))
    if command:
        found = dataclasses.replace(found, command=command, reasons=[
            *found.reasons, f"command: {command} (from headway.toml)"])
    if own:
        return dataclasses.replace(
            found, explain=f"{found.explain}; {own} used as is", containerfile=own,
            reasons=[*found.reasons, f"{own} found: built as is instead of a generated one"])
    if not found.command and not partial:
        raise ConfigError(f"{folder}: {found.explain}",
                          hint="set it in headway.toml: [processes.web] command = \"...\"")
    return found


def _tooling_only(folder: Path) -> bool:
    """A pyproject.toml that configures only tools (ruff, pytest) and is the folder's only
    Python marker: a repository whose app is in a folder below it (src/ with its own
    pyproject and requirements), not an app."""
    others = [f for f in python.MARKERS if f != "pyproject.toml" and (folder / f).exists()]
    if others or not (folder / "pyproject.toml").is_file():
        return False
    text = read(folder / "pyproject.toml")
    return not re.search(r"^\[(project|build-system|tool\.(poetry|pdm|uv|hatch))\b", text,
                         re.MULTILINE) and any(
        (folder / sub / marker).is_file() for sub in ("src", "app", "backend", "server", "api")
        for marker in ("requirements.txt", "pyproject.toml"))


def _own_file(folder: Path, policy: str | None) -> str | None:
    if policy == "generate":
        return None
    if policy:
        where = (folder / policy).resolve()
        if not where.is_relative_to(folder.resolve()) or not where.is_file():
            raise ConfigError(f"build.containerfile: {policy!r} is not a file in {folder}",
                              hint='a path inside the app, e.g. "docker/Dockerfile.prod", or '
                              '"generate"')
        return policy
    return next((f for f in OWN if (folder / f).is_file()), None)


def _with_procfile(found: Detected, web: str | None) -> Detected:
    """The Procfile's web line is the user's own word: it wins over detection (not a dev
    server, though). Steps it runs before its server leave the instance (see split_web)."""
    if web is None:
        return found
    server, migrations, setup = split_web(web)
    usable = _usable(server)
    if not usable:
        return dataclasses.replace(found, reasons=[
            *found.reasons, f"Procfile web: {web!r} runs a dev server: not used"])
    moved = [f"Procfile web: runs {step!r} before its server: moved to the release command"
             for step in migrations]
    build = [*found.build, *(s for s in setup if not _covered(s, found.build))]
    moved += [f"Procfile web: runs {step!r} before its server: moved to the build" for step in
              setup]
    return dataclasses.replace(found, command=usable, build=build, reasons=[
        *found.reasons, *moved, f"command: {usable} (Procfile web:)"],
        explain=f"{found.language.title()} app: the Procfile's web command")


def split_web(line: str) -> tuple[str, list[str], list[str]]:
    """A Procfile web line that prepares before it serves (`python manage.py migrate &&
    python manage.py collectstatic --no-input && gunicorn site.wsgi`): (its server, its
    migrations, its other steps). Left in the web command, those steps would run in every
    instance at every start, beside the live release and before any backup, and fail in a
    read-only image; migrations become the release command, the rest build steps. A line
    that is not such a chain comes back whole."""
    parts = [p.strip().removeprefix("exec ") for p in re.split(r"&&|;", line)]
    if len(parts) < 2 or any(not p or SHELL.search(p) for p in parts):
        return line, [], []
    *steps, server = parts
    if MIGRATE.search(server):
        return line, [], []
    migrations = [s for s in steps if MIGRATE.search(s) or DATA.search(s)]
    return server, migrations, [s for s in steps if s not in migrations]


def _covered(step: str, build: list[str]) -> bool:
    """`collectstatic --no-input` is the build's `collectstatic --noinput`: same words,
    other flags."""
    def words(command: str) -> list[str]:
        return [w for w in command.split() if not w.startswith("-")]
    return any(words(step) == words(done) for done in build)


def _usable(command: str | None) -> str:
    return bind_host(command) if command and not dev_server(command) else ""


def dev_server(command: str) -> bool:
    """nodemon, --watch, --reload, next dev, runserver, flask run...: never in production."""
    return bool(DEV_SERVER.search(command)) or any(re.search(p, command) for p, _ in node.DEV)


def procfile(folder: Path) -> dict[str, str]:
    """`name: command` lines of the app's Procfile, names made valid process names
    (web, worker, release...)."""
    out: dict[str, str] = {}
    for line in read(folder / "Procfile").splitlines():
        match = re.match(r"^\s*([A-Za-z][\w-]*)\s*:\s*(.+?)\s*$", line)
        if match and not line.lstrip().startswith("#"):
            out[match.group(1).lower().replace("_", "-")[:40]] = match.group(2)
    return out


def bind_host(command: str) -> str:
    """A Procfile line as a Headway command. A shell line (&&, pipes, ${X:-y}, cd ...) runs
    under `sh -c`, as on Heroku; uvicorn, hypercorn and gunicorn get `$HOST` (and `$PORT`) when
    they name no address of their own. Nothing else is changed."""
    if SHELL.search(command):
        return f"sh -c {shlex.quote(command)}"
    try:
        words = shlex.split(command)
    except ValueError:
        return command
    server = _server(words)
    has = {w.split("=")[0] for w in words}
    if server == "uvicorn" and not has & {"--host", "--uds", "--fd"}:
        command += " --host $HOST" + ("" if has & {"--port"} else " --port $PORT")
    elif server in {"gunicorn", "hypercorn"} and not has & {"--bind", "-b"} and \
            not any(w.startswith("-b") and len(w) > 2 for w in words):
        command += " --bind $HOST:$PORT"
    elif server == "granian" and "--host" not in has:
        command += " --host $HOST" + ("" if "--port" in has else " --port $PORT")
    elif server == "daphne" and not has & {"-b", "--bind", "-u", "--unix-socket", "--fd",
                                           "-e", "--endpoint"}:
        command += " -b $HOST" + ("" if has & {"-p", "--port"} else " -p $PORT")
    elif server == "waitress-serve" and not has & {"--listen", "--host", "--unix-socket"}:
        command += " --host=$HOST" + ("" if "--port" in has else " --port=$PORT")
    return command


def _server(words: list[str]) -> str:
    for i, word in enumerate(words[:4]):
        base = word.rsplit("/", 1)[-1]
        if base in {"uvicorn", "gunicorn", "hypercorn", "granian", "daphne", "waitress-serve"}:
            return base
        if word == "-m" and i + 1 < len(words):
            return words[i + 1]
    return ""


def own_command(path: Path | None) -> str:
    """The command a Containerfile/Dockerfile runs (ENTRYPOINT + CMD), as one line: Headway
    runs the configured command in the image, so it is written to headway.toml."""
    if path is None:
        return ""
    entry: list[str] = []
    cmd: list[str] = []
    for line in _joined_lines(read(path)):
        match = re.match(r"^\s*(ENTRYPOINT|CMD)\s+(.+)$", line, re.IGNORECASE)
        if not match:
            continue
        words = _instruction_words(match.group(2))
        if match.group(1).upper() == "CMD":
            cmd = words
        else:
            entry, cmd = words, []
    words = [*entry, *cmd]
    return shlex.join(words) if words else ""


def _joined_lines(text: str) -> list[str]:
    return re.sub(r"[ \t]*\\[ \t]*\n\s*", " ", text).splitlines()


def _instruction_words(rest: str) -> list[str]:
    rest = rest.strip()
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, list):
            return [str(v) for v in value]
    return ["sh", "-c", rest]


def render_toml(found: Detected, *, port: int, needs: Needs | None = None) -> str:
    """The commented headway.toml for what was found; `needs` (needs.scan) adds the health
    route, workers, release command, accessories, secrets, [env] and [volumes]."""
    from headway.builder.needs import Needs

    plan = needs or Needs()
    command = found.command or PLACEHOLDER
    if plan.port_env and found.command and "$PORT" not in command:
        command = f"env {plan.port_env[0]}=$PORT {command}"  # the port where it listens
    return "".join([f'''# headway.toml, written by `headway init` ({found.explain}).
# Reference: every key, its type and default, is in the README ("Config reference").

[app]
name = "{found.name}"
runtime = "auto"             # auto | process | podman | docker | kubernetes
{_secrets(plan)}
[processes.web]              # the process that receives HTTP traffic; gets $HOST and $PORT
command = {_toml(command)}
replicas = 2
''', _health(plan), *(f"""
{_pad(f"[processes.{name}]", "from the Procfile; workers get no $PORT")}
command = {_toml(cmd)}
""" for name, cmd in plan.workers.items()), _release(plan), '''
[deploy]
strategy = "blue-green"      # rolling | blue-green | canary
# timeout = "60s"            # a release not healthy within this fails
# drain_timeout = "30s"
# keep_previous = "10m"      # previous release stays warm: rollback is a traffic switch
''', f'''
[router]
{_pad(f"port = {port}", "where users' HTTP traffic arrives")}
''', *(_accessory(a) for a in plan.accessories), _volumes(plan), _env(plan)])


def _secrets(plan: Needs) -> str:
    lines = []
    if plan.secrets:
        lines += ["# the app reads these and they look secret: set each once with",
                  *(_pad(f"#   headway secrets set {v.name}", f"read at {v.where}")
                    for v in plan.secrets),
                  f"secrets = {_toml_list([v.name for v in plan.secrets])}"]
    if plan.optional_secrets:
        head = "# optional (a default in the code, or read on one branch only): `headway secrets set NAME`"
        lines += [head, *(_pad(f"#   {v.name}", v.where) for v in plan.optional_secrets)]
    if plan.generated:
        from headway.builder.needs import GENERATED

        head = "[secrets]                    # signing keys: a random value made once, kept"
        lines += ["", head, *(f'{v.name} = "{GENERATED}"' for v in plan.generated)]
    return "\n".join(lines) + "\n" if lines else ""


def _health(plan: Needs) -> str:
    if plan.health:
        return ("\n[processes.web.health]\n" + _pad(f"path = {_toml(plan.health.path)}",
                f"{plan.health.where}; must answer 2xx when the instance can serve") + "\n")
    return ("\n# [processes.web.health]    # no health route found: any answer below 500 on "
            "/ counts\n# path = \"/health\"          # a route that answers 2xx when ready\n")


def _release(plan: Needs) -> str:
    if not plan.release:
        return ""
    command, why = plan.release
    return (f"\n[release]                    # once per deploy, before traffic moves ({why})\n"
            f"command = {_toml(command)}\n")


def _accessory(acc: Accessory) -> str:
    lines = ["\n" + _pad(f"[accessories.{acc.name}]", acc.why), f'type = "{acc.type}"']
    if acc.scheme:
        lines.append(_pad(f"scheme = {_toml(acc.scheme)}", "its URL's scheme, the one the app's "
                          "driver knows"))
    if acc.url_env:
        lines.append(_pad(f"url_env = {_toml(acc.url_env)}", "its URL, in the variable the "
                          "app reads"))
    else:
        default = "DATABASE_URL" if acc.type == "postgres" else "REDIS_URL"
        lines.append(_pad(f'# url_env = "{default}"', "the app gets its URL in this variable"))
    if acc.env:
        inner = ", ".join(f"{k} = {_toml(v)}" for k, v in acc.env.items())
        lines.append(f"env = {{ {inner} }}")
    if acc.port:
        lines.append(_pad(f"port = {acc.port}", "the app reads its host but no port: the "
                          "default one"))
    return "\n".join(lines) + "\n"


def _volumes(plan: Needs) -> str:
    if not plan.volumes:
        return ""
    return "\n[volumes]                    # folders kept across releases\n" + "".join(
        _pad(f"{name} = {_toml(path)}", why) + "\n" for name, (path, why) in plan.volumes.items())


def _env(plan: Needs) -> str:
    lines = ["", "[env]"]
    lines += [_pad(f"{k} = {_toml(v)}", w if w.startswith("not ") or ": " in w else f"from {w}")
              for k, (v, w) in plan.env.items()]
    required = [v for v in plan.unset if not v.optional]
    if required:
        lines.append("# read by the app with no default, no value known (set them here, or as "
                     "secrets):")
        lines += [_pad(f'# {v.name} = ""', v.where) for v in required]
    optional = [v.name for v in plan.unset if v.optional]
    if optional:
        lines.append("# also read, optional (a default in the code, or read on one branch only):")
        lines += textwrap.wrap(", ".join(optional), 90, initial_indent="#   ",
                               subsequent_indent="#   ")
    lines += ["# [env.staging]              # overrides for `--env staging`",
              '# LOG_LEVEL = "debug"']
    return "\n".join(lines) + "\n"


def _pad(code: str, comment: str) -> str:
    return f"{code}{' ' * max(1, 29 - len(code))}# {comment}"


def _toml(value: str) -> str:
    return json.dumps(value)


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(_toml(v) for v in values) + "]"
