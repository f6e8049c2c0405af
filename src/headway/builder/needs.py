"""What an app needs to run, read from its files for `headway init`: PostgreSQL or Redis (from
its dependencies and settings) as accessories, the environment variables its code reads (wired
to an accessory's parts when their names say so, else listed as secrets or [env]), its
migrations as the release command, its health route (routes.py), its worker processes
(Procfile) and folders it writes to (volumes). Reads text only; never runs the app, never
copies a secret-looking value from an example file into headway.toml."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from headway.builder import routes
from headway.builder.common import Detected, read
from headway.builder.detect import bind_host, dev_server, procfile

SKIP_DIRS = {".git", ".hg", "node_modules", ".venv", "venv", "env", ".env", "__pycache__",
             "dist", "build", ".next", "out", "coverage", ".tox", ".nox", "site-packages",
             "vendor", "tests", "test", "__tests__", "spec", "e2e", "cypress", "docs",
             ".pytest_cache", ".mypy_cache", "static", "public", "fixtures", "examples"}
CODE = (".py", ".js", ".mjs", ".cjs", ".ts", ".mts", ".cts", ".jsx", ".tsx", ".prisma")
EXAMPLES = (".env.example", ".env.sample", ".env.template", ".env.dist", "env.example",
            "example.env", ".env.defaults", ".env.local.example")
MAX_FILES, MAX_BYTES = 3000, 400_000

# an accessory's parts, by the variable names apps use for them
PARTS = {
    "postgres": {
        "url": ["DATABASE_URL", "POSTGRES_URL", "POSTGRESQL_URL", "PG_URL", "DB_URL",
                "DATABASE_URI", "DB_URI", "SQLALCHEMY_DATABASE_URI", "SQLALCHEMY_DATABASE_URL",
                "POSTGRES_DSN", "PG_DSN", "DATABASE_DSN", "DB_DSN", "PG_CONNECTION_STRING",
                "DB_CONNECTION_STRING", "DATABASE_CONNECTION_STRING", "POSTGRES_PRISMA_URL",
                "POSTGRES_URL_NON_POOLING", "DIRECT_URL", "DIRECT_DATABASE_URL"],
        "host": ["DB_HOST", "PGHOST", "POSTGRES_HOST", "POSTGRES_SERVER", "DATABASE_HOST",
                 "DB_HOSTNAME", "PG_HOST", "POSTGRES_HOSTNAME"],
        "port": ["DB_PORT", "PGPORT", "POSTGRES_PORT", "DATABASE_PORT", "PG_PORT"],
        "user": ["DB_USER", "DB_USERNAME", "PGUSER", "POSTGRES_USER", "DATABASE_USER",
                 "DATABASE_USERNAME", "PG_USER", "POSTGRES_USERNAME"],
        "password": ["DB_PASSWORD", "DB_PASS", "PGPASSWORD", "POSTGRES_PASSWORD",
                     "DATABASE_PASSWORD", "PG_PASSWORD", "DB_PASSWD"],
        "database": ["DB_NAME", "DB_DATABASE", "PGDATABASE", "POSTGRES_DB", "POSTGRES_DATABASE",
                     "DATABASE_NAME", "PG_DATABASE", "POSTGRES_NAME"],
    },
    "redis": {
        "url": ["REDIS_URL", "REDIS_URI", "REDIS_DSN", "REDISCLOUD_URL", "REDIS_TLS_URL",
                "REDIS_CONNECTION_STRING", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND",
                "BROKER_URL", "RQ_REDIS_URL", "CACHE_REDIS_URL", "QUEUE_URL"],
        "host": ["REDIS_HOST", "REDIS_HOSTNAME"],
        "port": ["REDIS_PORT"],
        "password": ["REDIS_PASSWORD", "REDIS_PASS"],
    },
}
DEFAULT_URL = {"postgres": "DATABASE_URL", "redis": "REDIS_URL"}
NAMES = {"postgres": "db", "redis": "cache"}

PY_PACKAGES = {
    "postgres": {"psycopg", "psycopg2", "psycopg2-binary", "psycopg-binary", "asyncpg", "pg8000",
                 "aiopg", "psycopg-pool", "psycopg-c"},
    "redis": {"redis", "django-redis", "aioredis", "rq", "hiredis", "arq", "django-rq",
              "flask-rq2", "celery-redis", "redis-py-cluster"},
}
JS_PACKAGES = {
    "postgres": {"pg", "postgres", "pg-promise", "pg-pool", "slonik", "@neondatabase/serverless",
                 "@vercel/postgres", "pg-native"},
    "redis": {"ioredis", "redis", "bull", "bullmq", "bee-queue", "connect-redis",
              "rate-limit-redis", "@socket.io/redis-adapter", "kue", "@redis/client"},
}
OTHER_DATABASES = {"mysqlclient": "MySQL", "pymysql": "MySQL", "mysql2": "MySQL",
                   "mysql": "MySQL", "pymongo": "MongoDB", "mongoose": "MongoDB",
                   "mongodb": "MongoDB", "motor": "MongoDB", "pika": "RabbitMQ",
                   "amqplib": "RabbitMQ"}
SETTINGS = [  # (accessory, pattern in code/settings, what it is)
    ("postgres", r"postgres(?:ql)?(?:\+\w+)?://", "a PostgreSQL URL"),
    ("postgres", r"django\.(?:contrib\.gis\.)?db\.backends\.(?:postgresql|postgis)",
     "Django ENGINE postgresql"),
    ("postgres", r"provider\s*=\s*[\"']postgres(?:ql)?[\"']", "Prisma provider postgresql"),
    ("postgres", r"client\s*:\s*['\"](?:pg|postgres|postgresql)['\"]", "knex client pg"),
    ("postgres", r"dialect\s*:\s*['\"]postgres(?:ql)?['\"]", "dialect postgres"),
    ("postgres", r"type\s*:\s*['\"]postgres['\"]", "TypeORM type postgres"),
    ("redis", r"rediss?://", "a Redis URL"),
    ("redis", r"django_redis\.cache\.RedisCache|django\.core\.cache\.backends\.redis",
     "a Django Redis cache"),
]

# variables Headway sets itself, or platforms' own
OWN_VARS = {"PORT", "HOST", "NODE_ENV", "PATH", "HOME", "PWD", "USER", "SHELL", "LANG", "TZ",
            "CI", "DEBUG_PORT", "PYTHONPATH", "VIRTUAL_ENV", "HOSTNAME", "TERM", "TMPDIR",
            "DJANGO_SETTINGS_MODULE", "WEB_CONCURRENCY", "DYNO", "FLASK_APP"}
OWN_PREFIXES = ("HEADWAY_", "npm_", "NPM_", "HEROKU_", "RENDER", "VERCEL", "RAILWAY_", "FLY_",
                "NETLIFY", "AWS_LAMBDA", "GITHUB_ACTIONS", "K_SERVICE", "KUBERNETES_", "NEXT_RUNTIME",
                "PYTEST", "JEST_", "VITE_")
DEV_FLAGS = {"DEBUG", "FLASK_DEBUG", "DJANGO_DEBUG", "APP_DEBUG", "PYTHONBREAKPOINT"}
SECRET = re.compile(r"(^|_)(SECRET|PASSWORD|PASSWD|PASS|PWD|TOKEN|KEY|CREDENTIALS|SALT|DSN_SECRET)$"
                    r"|^SECRET_|_SECRET_")
PLACEHOLDER = re.compile(r"^$|change.?me|your|xxx|<.*>|\.\.\.|replace|example|todo|secret|^\*+$",
                         re.IGNORECASE)

PY_ENV = re.compile(
    r"(?:os\.environ\s*\[\s*|(?:os\.)?environ\.get\(\s*|os\.getenv\(\s*|getenv\(\s*|"
    r"\benv(?:\.(?:str|int|bool|float|list|tuple|json|url|db|db_url|cache|cache_url|email|"
    r"email_url|search_url|path|dict|decimal))?\(\s*|"
    r"\bconfig\(\s*)[\"']([A-Z][A-Z0-9_]*)[\"']\s*([,)\]])")
LIBPQ = ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE")
IMPLICIT = [  # calls that read a variable without naming it
    (r"\bdj_database_url\.config\((?![^)]*\benv\s*=)", "DATABASE_URL"),
    (r"\benv\.db(?:_url)?\(\s*\)", "DATABASE_URL"), (r"\benv\.cache(?:_url)?\(\s*\)", "CACHE_URL"),
    (r"\bdb_url\s*=\s*os\.environ\b", "DATABASE_URL")]
JS_ENV = re.compile(r"\b(?:process\.env|Bun\.env|import\.meta\.env)(?:\.([A-Z][A-Z0-9_]*)|"
                    r"\[\s*['\"`]([A-Z][A-Z0-9_]*)['\"`]\s*\])(\s*(?:\|\||\?\?))?")
JS_DESTRUCTURE = re.compile(r"\{([^{}]+)\}\s*=\s*process\.env\b")
PRISMA_ENV = re.compile(r"env\(\s*\"([A-Z][A-Z0-9_]*)\"\s*\)")
SETTINGS_CLASS = re.compile(r"^class\s+\w+\((?:[\w.]*BaseSettings)\):\s*\n((?:[ \t]+.*\n|\s*\n)*)",
                            re.MULTILINE)
SETTINGS_FIELD = re.compile(r"^([ \t]+)([A-Za-z][A-Za-z0-9_]*)[ \t]*:[ \t]*([^=\n]+)(=)?",
                            re.MULTILINE)
ENV_PREFIX = re.compile(r"env_prefix\s*=\s*[\"']([A-Za-z0-9_]*)[\"']")

SQLITE = re.compile(r"sqlite(?:\+\w+)?:///(?!/)(?:\./)?([\w./-]+)|"
                    r"[\"'`]((?:\./)?[\w-]+(?:/[\w.-]+)*\.(?:db|sqlite3?))[\"'`]|"
                    r"[\"'`]([\w-]+)[\"'`]\s*[,/]\s*[\"'`]([\w.-]+\.(?:db|sqlite3?))[\"'`]")
UPLOADS = re.compile(r"\b(?:MEDIA_ROOT|UPLOAD_FOLDER|UPLOAD_DIR|UPLOADS_DIR|dest|destination)\s*"
                     r"[:=]\s*(?:[^\n]*?[\"'`](?:\./)?([a-z][\w-]*)/?[\"'`])")


@dataclass(frozen=True)
class Var:
    name: str
    where: str  # "file:line" or an example file
    optional: bool = False  # the code has a default for it
    example: str | None = None  # its value in .env.example
    example_file: str = ""


@dataclass
class Accessory:
    name: str
    type: str
    why: str
    url_env: str | None = None
    env: dict[str, str] = field(default_factory=dict)  # VAR -> part


@dataclass(frozen=True)
class Note:
    """Something init could not decide: what, and the key that settles it."""

    text: str
    key: str


@dataclass
class Needs:
    workers: dict[str, str] = field(default_factory=dict)
    health: routes.Route | None = None
    release: tuple[str, str] | None = None  # command, why
    accessories: list[Accessory] = field(default_factory=list)
    secrets: list[Var] = field(default_factory=list)  # required: [app] secrets
    optional_secrets: list[Var] = field(default_factory=list)
    env: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (value, why)
    unset: list[Var] = field(default_factory=list)  # read, no value known
    volumes: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (path, why)
    found: list[str] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)


def scan(folder: Path, found: Detected) -> Needs:
    """Everything init writes beyond the web command."""
    files = _code_files(folder)
    deps, dep_files = _dependencies(folder)
    needs = Needs()
    _workers(folder, needs)
    _health(files, needs)
    variables = _variables(folder, files)
    kinds = _accessories(folder, files, deps, dep_files, needs)
    wired = _wire(kinds, variables, needs)
    _release(folder, found, deps, needs)
    _own_containerfile(folder, found, needs)
    _volumes(files, has_postgres="postgres" in kinds, needs=needs)
    _classify([v for v in variables.values() if v.name not in wired], found, needs)
    _allowed_hosts(files, variables, needs)
    _django_settings(folder, files, needs)
    needs.notes = list(dict.fromkeys(needs.notes))
    return needs


# reading ---------------------------------------------------------------------------------
def _code_files(folder: Path) -> dict[str, str]:
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
    return bool(re.search(r"^test_|_test\.py$|^conftest\.py$|\.(test|spec)\.[cm]?[jt]sx?$",
                          name))


def _dependencies(folder: Path) -> tuple[set[str], str]:
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
        names |= set(_package_json(folder).get("deps", []))
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


def _package_json(folder: Path) -> dict[str, list[str] | dict[str, str]]:
    try:
        pkg = json.loads(read(folder / "package.json") or "{}")
    except json.JSONDecodeError:
        return {}
    deps = [*pkg.get("dependencies", {}), *pkg.get("devDependencies", {}),
            *pkg.get("optionalDependencies", {})]
    scripts = pkg.get("scripts", {})
    return {"deps": [d.lower() for d in deps],
            "scripts": scripts if isinstance(scripts, dict) else {}}


# processes, health -----------------------------------------------------------------------
def _workers(folder: Path, needs: Needs) -> None:
    for name, command in procfile(folder).items():
        if name in {"web", "release"}:
            continue
        if dev_server(command):
            needs.notes.append(Note(f"Procfile {name}: {command!r} runs a dev server: left out",
                                    f'[processes.{name}] command = "..."'))
            continue
        needs.workers[name] = bind_host(command)
        needs.found.append(f"process {name}: {needs.workers[name]} (Procfile)")


def _health(files: dict[str, str], needs: Needs) -> None:
    found = routes.find(files)
    sure = [r for r in found if r.sure]
    if sure:
        needs.health = sure[0]
        needs.found.append(f"health: GET {sure[0].path} ({sure[0].where})")
        return
    if found:
        needs.notes.append(Note(
            f"{found[0].path} at {found[0].where} is on a router that may be mounted under a "
            "prefix: not used; the check accepts any answer below 500 on /",
            f'[processes.web.health] path = "/PREFIX{found[0].path}"'))
    else:
        needs.notes.append(Note(
            "no health route found: the check accepts any answer below 500 on /",
            '[processes.web.health] path = "/health" (a route that answers 2xx when ready)'))


# variables -------------------------------------------------------------------------------
def _variables(folder: Path, files: dict[str, str]) -> dict[str, Var]:
    """Variables the code reads (required when any read has no default) and those an example
    env file lists, with its value."""
    code: dict[str, Var] = {}
    for name, body in files.items():
        for where, var, optional in _reads(name, body):
            old = code.get(var)
            code[var] = Var(var, old.where if old else where,
                            optional and (old.optional if old else True))
    examples: dict[str, tuple[str, str]] = {}
    for example in EXAMPLES:
        for line in read(folder / example).splitlines():
            if m := re.match(r"^\s*(?:export\s+)?([A-Z][A-Z0-9_]*)\s*=\s*(.*?)\s*$", line):
                value = re.split(r"\s+#", m.group(2))[0].strip().strip("\"'")
                examples.setdefault(m.group(1), (value, example))
    out = {name: Var(name, var.where, var.optional, *examples.get(name, (None, "")))
           for name, var in code.items()}
    out |= {name: Var(name, file, False, value, file) for name, (value, file) in
            examples.items() if name not in code}
    return {k: v for k, v in out.items() if k not in OWN_VARS and not k.startswith(OWN_PREFIXES)}


def _reads(name: str, body: str) -> list[tuple[str, str, bool]]:
    """(file:line, variable, read with a default) for each variable the file reads."""
    out = []
    if name.endswith(".py"):
        for m in PY_ENV.finditer(body):
            rest = body[m.end():body.find("\n", m.end())]
            optional = ".get(" in m.group(0) or "getenv(" in m.group(0) or \
                (m.group(2) == "," and "default" in rest) or _conditional(body, m.start())
            out.append((f"{name}:{_line(body, m.start())}", m.group(1), optional))
        out += _settings_fields(name, body)
        out += [(f"{name}:{_line(body, m.start())}", var, True) for pattern, var in IMPLICIT
                for m in re.finditer(pattern, body)]
    elif name.endswith(".prisma"):
        out += [(f"{name}:{_line(body, m.start())}", m.group(1), False)
                for m in PRISMA_ENV.finditer(body)]
    else:
        for m in JS_ENV.finditer(body):
            out.append((f"{name}:{_line(body, m.start())}", m.group(1) or m.group(2),
                        bool(m.group(3))))
        for m in JS_DESTRUCTURE.finditer(body):
            for part in m.group(1).split(","):
                if v := re.match(r"\s*([A-Z][A-Z0-9_]*)\s*(=)?", part):
                    out.append((f"{name}:{_line(body, m.start())}", v.group(1), bool(v.group(2))))
        # node-postgres with no settings reads libpq's variables itself
        for m in re.finditer(r"\bnew\s+(?:pg\.)?(?:Pool|Client)\(\s*\)", body):
            out += [(f"{name}:{_line(body, m.start())}", var, True) for var in LIBPQ]
    return out


def _conditional(body: str, pos: int) -> bool:
    """A read inside an if/else/try block of Python code runs only on that branch."""
    start = body.rfind("\n", 0, pos) + 1
    line = body[start:pos]
    indent = len(line) - len(line.lstrip())
    if not indent:
        return False
    for above in reversed(body[:start].splitlines()):
        stripped = above.lstrip()
        if stripped and not stripped.startswith("#") and len(above) - len(stripped) < indent:
            return stripped.startswith(("if ", "elif ", "else", "try", "except", "with "))
    return False


def _settings_fields(name: str, body: str) -> list[tuple[str, str, bool]]:
    """pydantic BaseSettings fields: each is a variable (upper-cased, with env_prefix)."""
    out = []
    for cls in SETTINGS_CLASS.finditer(body):
        prefix = m.group(1) if (m := ENV_PREFIX.search(cls.group(1))) else ""
        block = cls.group(1)
        indent = min((len(x) - len(x.lstrip()) for x in block.splitlines() if x.strip()),
                     default=0)
        for f in SETTINGS_FIELD.finditer(block):
            if len(f.group(1)) != indent or f.group(2) in {"model_config", "else", "try",
                                                           "finally", "class", "Config"}:
                continue
            # `x: str | None` (no value) is optional too: pydantic defaults it to None
            optional = bool(f.group(4)) or "None" in f.group(3) or "Optional" in f.group(3)
            out.append((f"{name}:{_line(body, cls.start(1) + f.start())}",
                        (prefix + f.group(2)).upper(), optional))
    return out


def _line(body: str, pos: int) -> int:
    return body.count("\n", 0, pos) + 1


# accessories -----------------------------------------------------------------------------
def _accessories(folder: Path, files: dict[str, str], deps: set[str], dep_files: str,
                 needs: Needs) -> set[str]:
    why: dict[str, str] = {}
    for kind in ("postgres", "redis"):
        hits = sorted(deps & (PY_PACKAGES[kind] | JS_PACKAGES[kind]))
        if hits:
            why[kind] = f"{', '.join(hits)} in {dep_files}"
    texts = {**files, **{e: read(folder / e) for e in (*EXAMPLES, "alembic.ini")}}
    for kind, pattern, what in SETTINGS:
        if kind in why:
            continue
        for name, body in texts.items():
            if (m := re.search(pattern, body)) and "localhost:0" not in m.group(0):
                why[kind] = f"{what} in {name}:{_line(body, m.start())}"
                break
    if "celery" in deps and "redis" not in why:
        needs.notes.append(Note("celery is a dependency but its broker is not Redis as far as "
                                "the code says; RabbitMQ is not an accessory Headway runs",
                                '[accessories.cache] type = "redis" if it uses Redis'))
    for name, what in sorted(OTHER_DATABASES.items()):
        if name in deps and what not in {n.text.split()[0] for n in needs.notes}:
            needs.notes.append(Note(f"{what} ({name} in {dep_files}) is not an accessory "
                                    "Headway runs: give the app its address as a secret",
                                    "headway secrets set DATABASE_URL (or the variable the app "
                                    "reads)"))
    for kind in ("postgres", "redis"):
        if kind in why:
            needs.accessories.append(Accessory(NAMES[kind], kind, why[kind]))
    if "postgres" in why and "asyncpg" in deps and "sqlalchemy" in deps | {
            d.split("[")[0] for d in deps} | ({"sqlalchemy"} if "sqlmodel" in deps else set()):
        needs.notes.append(Note("SQLAlchemy with asyncpg wants a postgresql+asyncpg:// URL; the "
                                "accessory's URL starts with postgresql://",
                                "make the app's engine swap the scheme if it does not already"))
    return set(why)


def _wire(kinds: set[str], variables: dict[str, Var], needs: Needs) -> set[str]:
    """Variables that name an accessory's parts get them; returns the names wired."""
    wired: set[str] = set()
    for acc in needs.accessories:
        parts = PARTS[acc.type]
        urls = [v for v in parts["url"] if v in variables]
        if urls and DEFAULT_URL[acc.type] not in urls:
            acc.url_env = urls[0]
        for part, names in parts.items():
            for name in names:
                if name in variables and name != (acc.url_env or DEFAULT_URL[acc.type]):
                    acc.env[name] = part
        wired |= {DEFAULT_URL[acc.type], *(urls[:1]), *acc.env}
        reads = sorted({*urls, *acc.env})
        needs.found.append(f"accessory {acc.name}: {acc.type} ({acc.why}); gives "
                           f"{', '.join(reads) if reads else acc.url_env or DEFAULT_URL[acc.type]}")
        if not reads:
            needs.notes.append(Note(
                f"the app reads no {acc.type} variable Headway knows: it gets "
                f"{DEFAULT_URL[acc.type]}; if its settings name their own server, point them "
                "at it", f'[accessories.{acc.name}] url_env = "VAR" or env = {{ VAR = "host" }}'))
    return wired if kinds else set()


def _classify(variables: list[Var], found: Detected, needs: Needs) -> None:
    django = "django" in found.explain.lower() or "manage.py" in " ".join(found.reasons)
    for var in sorted(variables, key=lambda v: v.name):
        if SECRET.search(var.name) or (django and var.name == "SECRET_KEY"):
            required = not var.optional or (django and var.name in {"SECRET_KEY",
                                                                    "DJANGO_SECRET_KEY"})
            (needs.secrets if required else needs.optional_secrets).append(var)
        elif var.name in DEV_FLAGS:
            needs.unset.append(Var(var.name, var.where, True, None))
        elif var.example is not None and not PLACEHOLDER.search(var.example) and \
                "localhost" not in var.example and "127.0.0.1" not in var.example:
            needs.env[var.name] = (var.example, var.example_file)
        else:
            needs.unset.append(var)
    if needs.secrets:
        needs.found.append("secrets to set: " + ", ".join(v.name for v in needs.secrets))
    if needs.env:
        needs.found.append("env: " + ", ".join(f"{k} (from {w})" for k, (_, w) in
                                               needs.env.items()))
    for var in needs.unset:
        if not var.optional:
            needs.notes.append(Note(f"{var.name} is read ({var.where}) and has no default",
                                    f'[env] {var.name} = "..." (or headway secrets set '
                                    f"{var.name})"))


def _allowed_hosts(files: dict[str, str], variables: dict[str, Var], needs: Needs) -> None:
    """Django answers 400 to a Host header ALLOWED_HOSTS does not list (once DEBUG is off)."""
    name = next((n for n in ("ALLOWED_HOSTS", "DJANGO_ALLOWED_HOSTS") if n in variables), None)
    if not name or name in needs.env:
        return
    wildcard = re.compile(rf"{name}\b.*[\"']\*[\"']")
    if any(wildcard.search(body) for body in files.values()):
        return
    needs.notes.append(Note(f"Django reads {name} ({variables[name].where}): requests for "
                            "any other host name get 400 once DEBUG is off",
                            f'[env] {name} = "example.com" (the names users reach the app by)'))


def _django_settings(folder: Path, files: dict[str, str], needs: Needs) -> None:
    """A settings package with a production module that manage.py/wsgi.py do not default to:
    on Heroku-style hosts DJANGO_SETTINGS_MODULE is set outside the code."""
    if "DJANGO_SETTINGS_MODULE" in needs.env:
        return
    for body in (read(folder / "manage.py"), *(b for n, b in files.items()
                                               if n.endswith("wsgi.py"))):
        if m := re.search(r"DJANGO_SETTINGS_MODULE[\"']\s*,\s*[\"']([\w.]+)[\"']", body):
            module = m.group(1)
            break
    else:
        return
    package = module.rsplit(".", 1)[0]
    for prod in ("production", "prod"):
        if f"{package.replace('.', '/')}/{prod}.py" in files and \
                not module.endswith(f".{prod}"):
            needs.notes.append(Note(
                f"the code defaults to settings {module}; {package}.{prod} exists and is "
                "not used unless DJANGO_SETTINGS_MODULE says so",
                f'[env] DJANGO_SETTINGS_MODULE = "{package}.{prod}"'))
            return


# release, volumes ------------------------------------------------------------------------
def _release(folder: Path, found: Detected, deps: set[str], needs: Needs) -> None:
    candidates = _migrations(folder, found, deps)
    if not candidates:
        return
    needs.release = candidates[0]
    needs.found.append(f"release: {candidates[0][0]} ({candidates[0][1]})")
    if "alembic upgrade" in candidates[0][0]:
        _alembic_url(folder, needs)
    if re.match(r"(python -m )?flask\b", candidates[0][0]):
        _flask_app(folder, found, needs)
    for command, why in candidates[1:]:
        if command.startswith(candidates[0][0]) or candidates[0][0].startswith(command):
            continue
        needs.notes.append(Note(f"also found {why}: not used, the release command is "
                                f"{candidates[0][0]!r}", f'[release] command = "{command}"'))


def _alembic_url(folder: Path, needs: Needs) -> None:
    """alembic.ini naming its own server, with an env.py that never looks at the environment:
    the release command would migrate that server, not the accessory."""
    ini = read(folder / "alembic.ini")
    url = re.search(r"^\s*sqlalchemy\.url\s*=\s*(\S+://\S*@([\w.-]+)\S*)", ini, re.MULTILINE)
    where = re.search(r"^\s*script_location\s*=\s*(\S+)", ini, re.MULTILINE)
    env_py = read(folder / (where.group(1) if where else "alembic") / "env.py")
    if url and env_py and not re.search(r"environ|getenv|settings|config\.set_main_option|"
                                        r"get_url|DATABASE", env_py):
        needs.notes.append(Note(
            f"alembic.ini names its own server ({url.group(2)}) and "
            f"{where.group(1) if where else 'alembic'}/env.py does not read the environment: "
            "`alembic upgrade head` would not reach the accessory",
            "in env.py, config.set_main_option(\"sqlalchemy.url\", os.environ[\"DATABASE_URL\"])"))


def _flask_app(folder: Path, found: Detected, needs: Needs) -> None:
    """`flask db upgrade` finds the app by FLASK_APP unless app.py or wsgi.py is at the root;
    .flaskenv is read only when python-dotenv is installed, so it is written to [env]."""
    if any((folder / f).is_file() for f in ("app.py", "wsgi.py")):
        return
    for name in (".flaskenv", ".env.example", ".env"):
        if m := re.search(r"^\s*FLASK_APP\s*=\s*[\"']?([^\"'\s#]+)", read(folder / name),
                          re.MULTILINE):
            needs.env["FLASK_APP"] = (m.group(1), name)
            return
    if m := re.search(r"\bgunicorn\b.*?\s'?\"?([\w.]+:[\w.]+(?:\(\))?)", found.command):
        needs.env["FLASK_APP"] = (m.group(1), "the web command")
        return
    needs.notes.append(Note("flask db upgrade needs to find the app: no app.py or wsgi.py, "
                            "no FLASK_APP", '[env] FLASK_APP = "package:create_app()"'))


def _migrations(folder: Path, found: Detected, deps: set[str]) -> list[tuple[str, str]]:
    out = []
    if release := procfile(folder).get("release"):
        out.append((bind_host(release), "Procfile release:"))
    scripts = _package_json(folder).get("scripts", {})
    runner = "bun run" if found.installer == "bun" else "npm run"  # npm is in every Node image
    for script in ("migrate", "db:migrate", "migrate:deploy", "migration:run", "migrate:prod"):
        if isinstance(scripts, dict) and script in scripts:
            out.append((f"{runner} {script}", f"the {script!r} script of package.json"))
            break
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
    knexfile = next(folder.glob("knexfile.*"), None)
    if knexfile:
        out.append(("npx knex migrate:latest", knexfile.name))
    return out


def _prisma_schema(folder: Path) -> Path | None:
    try:
        named = json.loads(read(folder / "package.json") or "{}").get("prisma", {}).get("schema")
    except (json.JSONDecodeError, AttributeError):
        named = None
    for path in (named, "prisma/schema.prisma", "schema.prisma"):
        if isinstance(path, str) and (folder / path).is_file():
            return folder / path
    return None


def _own_containerfile(folder: Path, found: Detected, needs: Needs) -> None:
    """An app's own Dockerfile that copies what the repository does not hold (a dist/ built
    outside it) cannot build here."""
    if not found.containerfile:
        return
    text = re.sub(r"[ \t]*\\[ \t]*\n\s*", " ", read(folder / found.containerfile))
    for m in re.finditer(r"^\s*(?:COPY|ADD)\s+(?!.*--from)(.+)$", text,
                         re.MULTILINE | re.IGNORECASE):
        words = [w for w in m.group(1).split() if not w.startswith("--")]
        for src in words[:-1]:
            rel = src.removeprefix("./").strip("/")
            if not rel or rel == "." or "$" in rel or src.startswith(("[", "http", "/")):
                continue
            if not _exists(folder, rel):
                needs.notes.append(Note(
                    f"{found.containerfile} copies {src}, which the app folder does not hold "
                    "(built outside it?): the image build would fail",
                    '[build] containerfile = "generate" (Headway builds it in the image)'))
                return


def _exists(folder: Path, pattern: str) -> bool:
    try:
        return any(folder.glob(pattern))
    except (ValueError, IndexError):  # a pattern pathlib cannot take: assume it is there
        return True


def _volumes(files: dict[str, str], *, has_postgres: bool, needs: Needs) -> None:
    for name, body in files.items():
        for m in UPLOADS.finditer(body):
            if m.group(0).startswith("dest") and "multer" not in body:
                continue
            _volume(m.group(1), f"{name}:{_line(body, m.start())}", needs)
        if has_postgres:
            continue
        for m in SQLITE.finditer(body):
            path = (m.group(1) or m.group(2) or
                    (f"{m.group(3)}/{m.group(4)}" if m.group(3) else "")).removeprefix("./")
            if "/" in path and ":memory:" not in path:
                _volume(path.rsplit("/", 1)[0], f"SQLite {path} ({name}:"
                        f"{_line(body, m.start())})", needs)
            elif path:
                needs.notes.append(Note(
                    f"SQLite file {path} ({name}:{_line(body, m.start())}) sits in the app's "
                    "own folder: each release starts from the committed copy, so its data "
                    "does not survive a deploy", 'put it in a folder, e.g. data/, and set '
                    '[volumes] data = "data"'))


def _volume(path: str, why: str, needs: Needs) -> None:
    path = path.strip("/")
    if not path or path.startswith(("..", "/")) or path.split("/")[0] in {
            "tmp", "static", "dist", "build", "public", "out", "node_modules"}:
        return
    name = re.sub(r"[^a-z0-9-]+", "-", path.lower()).strip("-")[:40]
    if not name or not name[0].isalpha():
        name = f"v-{name}"[:40]
    if name not in needs.volumes and path not in {p for p, _ in needs.volumes.values()}:
        needs.volumes[name] = (path, why)
        needs.found.append(f"volume {name}: {path}/ kept across releases ({why})")
