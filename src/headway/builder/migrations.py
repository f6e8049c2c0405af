"""An app's migrations, for `headway init`'s `[release] command`: a Procfile `release:` line,
a package.json migrate script, a compose service that migrates, Tortoise's aerich, alembic.ini, Django, Flask-Migrate, Prisma, knex, in that order
of preference; and what would keep the chosen one from reaching the accessory (FLASK_APP,
an alembic.ini that names its own server). Reads text only; never runs a migration."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import yaml

from headway.builder import pydeps
from headway.builder.appfiles import package_json
from headway.builder.common import Detected, read
from headway.builder.detect import bind_host, procfile, split_web

Finding = tuple[str, str]  # (what, the key that settles it)


def checks(folder: Path, found: Detected, command: str) -> tuple[dict[str, tuple[str, str]],
                                                                 list[Finding]]:
    """[env] values and notes the chosen release command needs."""
    env: dict[str, tuple[str, str]] = {}
    notes: list[Finding] = []
    if "alembic upgrade" in command:
        notes += _alembic_url(folder)
    if re.match(r"(python -m )?flask\b", command) and \
            not any((folder / f).is_file() for f in ("app.py", "wsgi.py")):
        if flask_app := _flask_app(folder, found):
            env["FLASK_APP"] = flask_app
        else:
            what = "flask db upgrade needs to find the app: no app.py or wsgi.py, no FLASK_APP"
            notes.append((what, '[env] FLASK_APP = "package:create_app()"'))
    return env, notes


def _alembic_url(folder: Path) -> list[Finding]:
    """alembic.ini naming its own server, with an env.py that never looks at the environment:
    the release command would migrate that server, not the accessory."""
    ini = read(folder / "alembic.ini")
    url = re.search(r"^\s*sqlalchemy\.url\s*=\s*(\S+://\S*@([\w.-]+)\S*)", ini, re.MULTILINE)
    where = re.search(r"^\s*script_location\s*=\s*(\S+)", ini, re.MULTILINE)
    env_py = read(folder / (where.group(1) if where else "alembic") / "env.py")
    if url and env_py and not re.search(r"environ|getenv|settings|config\.set_main_option|"
                                        r"get_url|DATABASE", env_py):
        what = (f"alembic.ini names its own server ({url.group(2)}) and "
                f"{where.group(1) if where else 'alembic'}/env.py does not read the "
                "environment: `alembic upgrade head` would not reach the accessory")
        key = 'in env.py, config.set_main_option("sqlalchemy.url", os.environ["DATABASE_URL"])'
        return [(what, key)]
    return []


def _flask_app(folder: Path, found: Detected) -> tuple[str, str] | None:
    """`flask db upgrade` finds the app by FLASK_APP unless app.py or wsgi.py is at the root;
    .flaskenv is read only when python-dotenv is installed, so it is written to [env]."""
    for name in (".flaskenv", ".env.example", ".env"):
        if m := re.search(r"^\s*FLASK_APP\s*=\s*[\"']?([^\"'\s#]+)", read(folder / name),
                          re.MULTILINE):
            return m.group(1), name
    if m := re.search(r"\bgunicorn\b.*?\s'?\"?([\w.]+:[\w.]+(?:\(\))?)", found.command):
        return m.group(1), "the web command"
    return None


def candidates(folder: Path, found: Detected, deps: set[str]) -> list[Finding]:
    """(command, where it comes from), the preferred first."""
    out = []
    lines = procfile(folder)
    if release := lines.get("release"):
        out.append((bind_host(release), "Procfile release:"))
    if steps := split_web(lines.get("web", ""))[1]:
        out.append((bind_host(" && ".join(steps)), "the Procfile's web line, before its server"))
    out += _script_migration(folder)
    scripts = package_json(folder).get("scripts", {})
    runner = "bun run" if found.installer == "bun" else "npm run"  # npm is in every Node image
    for script in ("migrate", "db:migrate", "migrate:deploy", "migration:run", "migrate:prod"):
        # not one that runs elsewhere (`heroku run npx knex migrate:latest`)
        if isinstance(scripts, dict) and script in scripts and not re.search(
                r"\b(heroku|docker|docker-compose|podman|kubectl|ssh|fly|railway)\b",
                str(scripts[script])):
            out.append((f"{runner} {script}", f"the {script!r} script of package.json"))
            break
    out += _compose_migration(folder)
    if "aerich" in deps and "aerich" in pydeps.load_toml(folder / "pyproject.toml").get("tool", {}):
        out.append(("aerich upgrade", "aerich and [tool.aerich] in pyproject.toml"))
    if (folder / "alembic.ini").is_file():
        out.append(("alembic upgrade head", "alembic.ini"))
    if (folder / "manage.py").is_file() and "django" in read(folder / "manage.py").lower():
        out.append(("python manage.py migrate --noinput", "Django manage.py"))
    if "flask-migrate" in deps and (folder / "migrations" / "env.py").is_file():
        out.append(("flask db upgrade", "Flask-Migrate and migrations/"))
    if schema := _prisma_schema(folder):
        where = schema.relative_to(folder).as_posix()
        flag = "" if where == "prisma/schema.prisma" else f" --schema {where}"
        migrations = (schema.parent / "migrations").is_dir()
        out.append((f"npx prisma migrate deploy{flag}" if migrations else
                    f"npx prisma db push --skip-generate{flag}",
                    where + ("" if migrations else " without migrations/")))
    knexfile = next(folder.glob("knexfile.*"), None) or next(
        (f for f in sorted(folder.glob("*/knexfile.*")) if f.parent.name != "node_modules"), None)
    if knexfile:
        where = knexfile.relative_to(folder).as_posix()
        flag = "" if knexfile.parent == folder else f" --knexfile {where}"
        out.append((f"npx knex migrate:latest{flag}", where))
    return out


# a migration the app's own startup script runs before its server (entrypoint.sh, startup.sh)
SCRIPT_MIGRATION = re.compile(
    r"^[ \t]*(?:exec\s+)?((?:python3?\s+-m\s+)?flask\b[^\n;&|]*\bdb\s+upgrade\b[^\n;&|]*|"
    r"(?:python3?\s+)?(?:\./)?manage\.py\s+migrate\b[^\n;&|]*|"
    r"(?:python3?\s+-m\s+)?alembic\s+upgrade\s+\w+[^\n;&|]*|"
    r"npx\s+(?:knex\s+migrate:latest|prisma\s+migrate\s+deploy)\b[^\n;&|]*)$", re.MULTILINE)


# what else such a script runs of the app's own before its server: its CLI (`flask --app
# flaskapp seed`, `manage.py loaddata`) or one of its scripts (`python3 fastapi_app/seed_data.py`)
SCRIPT_APP_CLI = re.compile(r"^[ \t]*((?:python3?\s+-m\s+)?flask\s[^\n;&|]*|"
                            r"(?:python3?\s+)?(?:\./)?manage\.py\s[^\n;&|]*|"
                            r"python3?\s+(?!-)[\w./-]+\.py(?:\s[^\n;&|]*)?)$")
SCRIPT_SERVER = re.compile(r"\b(gunicorn|uvicorn|hypercorn|daphne|waitress-serve|granian|"
                           r"runserver|flask\s+run|npm\s+(run\s+)?start|node)\b")
NOT_RELEASE = re.compile(r"\b(collectstatic|compilemessages|translate|shell|pip|createsuperuser|"
                         r"test|pytest)\b")


def _script_migration(folder: Path) -> list[Finding]:
    """What the app's startup script runs before its server, pip installs and build steps
    aside: its migration with its authors' flags (`flask --app flaskapp db upgrade --directory
    flaskapp/migrations`), a seed, a script that makes the tables; several in one `sh -c`."""
    for script in sorted(folder.glob("*.sh")):
        steps = []
        for line in read(script).splitlines():
            if SCRIPT_SERVER.search(line) and not SCRIPT_MIGRATION.match(line):
                break
            m = SCRIPT_MIGRATION.match(line) or SCRIPT_APP_CLI.match(line)
            if m and not NOT_RELEASE.search(line):
                steps.append(_as_module(folder, m.group(1).strip()))
        else:
            continue  # no server started: not a startup script
        if steps:
            command = steps[0] if len(steps) == 1 else f"sh -c {shlex.quote(' && '.join(steps))}"
            return [(command, f"{script.name}, before its server")]
    return []


def _as_module(folder: Path, step: str) -> str:
    """`python3 pkg/seed.py` -> `python3 -m pkg.seed` when pkg is a package: the script
    imports its own package, which the authors' `pip install -e .` put on the path and
    Headway does not install; run as a module, the app's folder is on the path."""
    m = re.match(r"(python3?)\s+([\w/-]+)\.py\b(.*)$", step)
    if not m or "/" not in m.group(2) or not (folder / m.group(2)).parent.joinpath(
            "__init__.py").is_file():
        return step
    return f"{m.group(1)} -m {m.group(2).replace('/', '.')}{m.group(3)}"


def _compose_migration(folder: Path) -> list[Finding]:
    """The command of a compose service named for migrations and built from the app
    (`db-migration: {build: ., command: [node, db/run-migration.js]}`); the container's paths
    under the app's bind mount (`.:/usr/src/app`) are made relative to the app's folder."""
    for path in sorted([*folder.glob("docker-compose*.y*ml"), *folder.glob("compose*.y*ml")]):
        try:
            services = (yaml.safe_load(read(path)) or {}).get("services") or {}
        except (yaml.YAMLError, AttributeError):
            continue
        for name, svc in services.items() if isinstance(services, dict) else ():
            if "migrat" not in str(name).lower() or not isinstance(svc, dict) or \
                    not svc.get("build") or not svc.get("command"):
                continue
            argv = svc["command"] if isinstance(svc["command"], list) else \
                shlex.split(str(svc["command"]))
            roots = [v.split(":")[1].rstrip("/") for v in svc.get("volumes") or []
                     if isinstance(v, str) and re.match(r"^\.?/?:|^\./?:", v)]
            argv = [_relative(str(a), roots) for a in argv]
            if any(a.startswith("/") for a in argv):
                continue  # a path inside the container the app's folder does not map
            return [(shlex.join(argv), f"{path.name} service {name}")]
    return []


def _relative(arg: str, roots: list[str]) -> str:
    for root in roots:
        if arg == root:
            return "."
        if arg.startswith(root + "/"):
            return arg[len(root) + 1:]
    return arg


def _prisma_schema(folder: Path) -> Path | None:
    try:
        named = json.loads(read(folder / "package.json") or "{}").get("prisma", {}).get("schema")
    except (json.JSONDecodeError, AttributeError):
        named = None
    for path in (named, "prisma/schema.prisma", "schema.prisma"):
        if isinstance(path, str) and (folder / path).is_file():
            return folder / path
    return None
