"""What an app needs to run, read from its files for `headway init`: PostgreSQL or Redis (from
its dependencies and settings) as accessories, the environment variables its code reads (wired
to an accessory's parts when their names say so, else listed as secrets or [env]), its
migrations as the release command, its health route (routes.py), its worker processes
(Procfile) and folders it writes to (volumes). Reads text only; never runs the app, never
copies a secret-looking value from an example file into headway.toml."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from headway.builder import migrations, routes
from headway.builder.appfiles import code_files, dependencies
from headway.builder.appfiles import line as _line
from headway.builder.common import Detected, read
from headway.builder.detect import bind_host, dev_server, procfile
from headway.builder.envvars import EXAMPLES, JS_ENV, Var
from headway.builder.envvars import variables as read_variables

# an accessory's parts, by the variable names apps use for them
PARTS = {
    "postgres": {
        "url": ["DATABASE_URL", "POSTGRES_URL", "POSTGRESQL_URL", "PG_URL", "DB_URL",
                "DATABASE_URI", "DB_URI", "SQLALCHEMY_DATABASE_URI", "SQLALCHEMY_DATABASE_URL",
                "POSTGRES_DSN", "PG_DSN", "DATABASE_DSN", "DB_DSN", "PG_CONNECTION_STRING",
                "DB_CONNECTION_STRING", "DATABASE_CONNECTION_STRING", "POSTGRES_PRISMA_URL",
                "POSTGRES_URL_NON_POOLING", "DIRECT_URL", "DIRECT_DATABASE_URL",
                "PG_CONNECTION", "POSTGRES_CONNECTION_STRING"],
        "host": ["DB_HOST", "PGHOST", "POSTGRES_HOST", "POSTGRES_SERVER", "DATABASE_HOST",
                 "DB_HOSTNAME", "PG_HOST", "POSTGRES_HOSTNAME", "SQL_HOST", "DBHOST"],
        "port": ["DB_PORT", "PGPORT", "POSTGRES_PORT", "DATABASE_PORT", "PG_PORT", "SQL_PORT",
                 "DBPORT"],
        "user": ["DB_USER", "DB_USERNAME", "PGUSER", "POSTGRES_USER", "DATABASE_USER",
                 "DATABASE_USERNAME", "PG_USER", "POSTGRES_USERNAME", "SQL_USER", "DBUSER"],
        "password": ["DB_PASSWORD", "DB_PASS", "PGPASSWORD", "POSTGRES_PASSWORD",
                     "DATABASE_PASSWORD", "PG_PASSWORD", "DB_PASSWD", "SQL_PASSWORD", "DBPASS",
                     "DBPASSWORD"],
        "database": ["DB_NAME", "DB_DATABASE", "PGDATABASE", "POSTGRES_DB", "POSTGRES_DATABASE",
                     "DATABASE_NAME", "PG_DATABASE", "POSTGRES_NAME", "SQL_DATABASE", "DBNAME"],
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
DEFAULT_PORT = {"postgres": 5432, "redis": 6379}
# a variable given a database URL in the app's compose file or env file: VAR=postgres://...
URL_VALUE = re.compile(r"^\s*(?:-\s*)?(?:export\s+)?([A-Z][A-Z0-9_]*)\s*[:=]\s*[\"']?"
                       r"(postgres(?:ql)?(?:\+\w+)?|rediss?)://", re.MULTILINE)
URL_FILES = ("docker-compose*.y*ml", "compose*.y*ml", ".env", ".env.*", "env.example",
             "example.env")
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
    ("postgres", r"\bimport\s*\{[^}]*\b(?:SQL|sql)\b[^}]*\}\s*from\s*[\"']bun[\"']|\bBun\.sql\b",
     "Bun's SQL client"),
    ("redis", r"rediss?://", "a Redis URL"),
    ("redis", (r"\bimport\s*\{[^}]*\b(?:redis|RedisClient)\b[^}]*\}\s*from\s*[\"']bun[\"']|"
     r"\bBun\.redis\b"), "Bun's Redis client"),
    ("redis", r"django_redis\.cache\.RedisCache|django\.core\.cache\.backends\.redis",
     "a Django Redis cache"),
]

# SQLAlchemy's asyncio engine: it wants a postgresql+asyncpg:// URL (`databases` or a sync
# engine beside asyncpg take postgresql:// as it is); SQLModel's AsyncEngine(create_engine(..))
# is one too
ASYNC_ENGINE = re.compile(r"\b(?:create_async_engine|async_engine_from_config|AsyncEngine\()|"
                          r"postgres(?:ql)?\+asyncpg:")

PLATFORM_MODULE = re.compile(r"[\"']([\w.]+)[\"']\s+if\s+[\"'][A-Z][A-Z0-9_]*[\"']\s+in\s+"
                             r"os\.environ\s+else\s+[\"'][\w.]+[\"']")

SIGNING_KEYS = {"SECRET_KEY", "DJANGO_SECRET_KEY", "FLASK_SECRET_KEY", "APP_SECRET_KEY",
                "SECRET_KEY_BASE", "SESSION_SECRET", "JWT_SECRET", "JWT_SECRET_KEY"}
SIGNING = re.compile(r"(SESSION|COOKIE|JWT|CSRF|SIGNING)_(SECRET|KEY)(_KEY)?$")
GENERATED = "generate:50"
# a variable the code makes its signing key whatever its name (`SECRET_KEY =
# os.environ["FLASKSECRET"]`, `app.config["SECRET_KEY"] = os.getenv("APP_KEY")`,
# `app.secret_key = ...`): a signing key too
KEY_FROM = re.compile(r"(?:\bSECRET_KEY[\"']?\]?|\.secret_key)\s*=\s*(?:os\.environ\.get|"
                      r"os\.getenv|os\.environ\[|env\.str|env|config)\(?\s*[\"']([A-Z][A-Z0-9_]*)[\"']")
DEV_FLAGS = {"DEBUG", "FLASK_DEBUG", "DJANGO_DEBUG", "APP_DEBUG", "PYTHONBREAKPOINT"}
SECRET = re.compile(r"(^|_)(SECRET|PASSWORD|PASSWD|PASS|PWD|TOKEN|KEY|CREDENTIALS|SALT|DSN_SECRET)$"
                    r"|^SECRET_|_SECRET_")
PLACEHOLDER = re.compile(r"^$|change.?me|your|xxx|<.*>|\.\.\.|replace|example|todo|secret|^\*+$",
                         re.IGNORECASE)


SQLITE = re.compile(r"sqlite(?:\+\w+)?:///(?!/)(?:\./)?([\w./-]+)|"
                    r"[\"'`]((?:\./)?[\w-]+(?:/[\w.-]+)*\.(?:db|sqlite3?))[\"'`]|"
                    r"[\"'`]([\w-]+)[\"'`]\s*[,/]\s*[\"'`]([\w.-]+\.(?:db|sqlite3?))[\"'`]")
UPLOADS = re.compile(r"\b(?:MEDIA_ROOT|UPLOAD_FOLDER|UPLOAD_DIR|UPLOADS_DIR|dest|destination)\s*"
                     r"[:=]\s*(?:[^\n]*?[\"'`](?:\./)?([a-z][\w-]*)/?[\"'`])")
# a folder the app makes in its working directory at run time (microblog's `os.mkdir('logs')`
# for its log file): a release's folder is not the app's to write, so it becomes a volume
MKDIR = re.compile(r"\b(?:os\.(?:mkdir|makedirs)|(?:fs\.)?mkdirSync|fs\.promises\.mkdir)\(\s*"
                   r"[\"'`](?:\./)?([a-z][\w-]*)/?[\"'`]\s*[,)]|"
                   r"\bPath\(\s*[\"'](?:\./)?([a-z][\w-]*)/?[\"']\s*\)\s*\.mkdir\b")
# a switch that sends the app's log to stdout instead of a file (Heroku's LOG_TO_STDOUT=1):
# stdout is what `headway logs` keeps, so init sets it
LOG_TO_STDOUT = re.compile(r"^(?:[A-Z]+_)?LOGS?_(?:TO_)?STDOUT$")
# a server that listens on its own variable (`app.listen(process.env.APP_PORT)`): the web
# command gives it Headway's $PORT there
LISTEN_VAR = re.compile(r"\.listen\(\s*(?:Number\(|parseInt\(|\+)?\s*(?:process\??\.env\??\.|"
                        r"[\w?]+\??\.)?([A-Z][A-Z0-9_]*PORT)\b")
# the variable that names the app's environment: a production deploy is "production",
# whatever the development example says (a knexfile keyed by it wants NODE_ENV's name)
ENV_NAMES = {"APP_ENV", "APP_ENVIRONMENT", "ENVIRONMENT", "ENV", "STAGE", "APP_STAGE",
             "FLASK_ENV", "RAILS_ENV", "RACK_ENV"}
DEV_NAMES = {"development", "dev", "local", "develop"}
# a knexfile's block for another environment than production (`development: {...}`)
KNEX_DEV = re.compile(r"^\s*[\"']?(?:development|dev|local|test|testing)[\"']?\s*:\s*\{",
                      re.MULTILINE)
KNEXFILE = re.compile(r"(?:^|/)knexfile\.[cm]?[jt]s$")


@dataclass
class Accessory:
    name: str
    type: str
    why: str
    url_env: str | None = None
    env: dict[str, str] = field(default_factory=dict)  # VAR -> part
    port: int = 0  # 0: a free one; the default port when the app can be given no other
    scheme: str | None = None  # its URL's, when the app's driver wants another than postgresql


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
    generated: list[Var] = field(default_factory=list)  # signing keys: [secrets] generate:
    optional_secrets: list[Var] = field(default_factory=list)
    env: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (value, why)
    unset: list[Var] = field(default_factory=list)  # read, no value known
    volumes: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (path, why)
    port_env: tuple[str, str] | None = None  # the variable the server listens on, where
    found: list[str] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)


def scan(folder: Path, found: Detected, top: Path | None = None) -> Needs:
    """Everything init writes beyond the web command; `top`: the repository that holds the
    app's folder, when headway.toml is written there."""
    files = code_files(folder)
    deps, dep_files = dependencies(folder)
    needs = Needs()
    _workers(folder, needs)
    _health(files, needs)
    variables = read_variables(folder, files, top)
    _listen_var(files, variables, needs)
    kinds = _accessories(folder, files, deps, dep_files, needs)
    wired = _wire(kinds, variables, needs, _url_values(folder, top))
    _release(folder, found, deps, needs)
    _own_containerfile(folder, found, needs)
    _volumes(files, has_postgres="postgres" in kinds, needs=needs)
    # a database's parts (DB_PASS...) read with no such database in the dependencies: a
    # setting of a driver the app does not use (SQLite in production), never a must-set
    other = {n for kind, parts in PARTS.items() if kind not in kinds for names in parts.values()
             for n in names}
    elsewhere = _platform_modules(files)
    other |= _knex_dev_only(files)
    _classify([replace(v, optional=v.optional or v.name in other or
                       v.where.split(":")[0] in elsewhere)
               for v in variables.values() if v.name not in wired], needs, _signing_reads(files))
    _made_folders(files, needs)
    _allowed_hosts(files, variables, needs)
    _django_settings(folder, files, needs)
    needs.notes = list(dict.fromkeys(needs.notes))
    return needs


def _knex_dev_only(files: dict[str, str]) -> set[str]:
    """Variables read only in a knexfile's development or test block (DEV_DATABASE_URL):
    the deploy's NODE_ENV is production, so they are never read there."""
    inside: set[str] = set()
    outside: set[str] = set()
    for name, body in files.items():
        spans = [(m.end(), _closing(body, m.end() - 1)) for m in KNEX_DEV.finditer(body)] \
            if KNEXFILE.search(name) else []
        for m in JS_ENV.finditer(body):
            var = m.group(1) or m.group(2)
            (inside if any(a <= m.start() < b for a, b in spans) else outside).add(var)
    return inside - outside


def _closing(body: str, start: int) -> int:
    """The index of the brace that closes the one at `start` (the end when none does)."""
    depth = 0
    for i in range(start, len(body)):
        depth += {"{": 1, "}": -1}.get(body[i], 0)
        if depth == 0:
            return i
    return len(body)


def _platform_modules(files: dict[str, str]) -> set[str]:
    """Settings modules the code picks only when a platform's variable is set
    (`'site.production' if 'WEBSITE_HOSTNAME' in os.environ else 'site.settings'`): what
    they read is that platform's, never a must-set here."""
    out = set()
    for body in files.values():
        for m in PLATFORM_MODULE.finditer(body):
            out.add(m.group(1).replace(".", "/") + ".py")
    return out


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
        needs.found.append(f'[processes.{name}] command = "{needs.workers[name]}"  (Procfile)')


def _health(files: dict[str, str], needs: Needs) -> None:
    found = routes.find(files)
    sure = [r for r in found if r.sure]
    if sure:
        needs.health = sure[0]
        needs.found.append(f'[processes.web.health] path = "{sure[0].path}"  ({sure[0].where})')
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
    tortoise = "postgres" in why and "tortoise-orm" in deps
    for kind in ("postgres", "redis"):
        if kind in why:
            scheme = "postgres" if tortoise and kind == "postgres" else None
            needs.accessories.append(Accessory(NAMES[kind], kind, why[kind], scheme=scheme))
    if "postgres" in why and "asyncpg" in deps and any(ASYNC_ENGINE.search(body)
                                                       for body in texts.values()):
        needs.notes.append(Note("SQLAlchemy with asyncpg wants a postgresql+asyncpg:// URL; the "
                                "accessory's URL starts with postgresql://",
                                "make the app's engine swap the scheme if it does not already, "
                                'or [accessories.db] scheme = "postgresql+asyncpg"'))
    if tortoise:
        needs.found.append('[accessories.db] scheme = "postgres"  (tortoise-orm: Tortoise knows '
                           "postgres:// and asyncpg://, not postgresql://)")
    return set(why)


def _url_values(folder: Path, top: Path | None) -> dict[str, str]:
    """Variables the app's compose or env files give a database URL: VAR -> its scheme."""
    out: dict[str, str] = {}
    for where in dict.fromkeys([folder, top or folder]):
        for pattern in URL_FILES:
            for path in sorted(where.glob(pattern)):
                for m in URL_VALUE.finditer(read(path)):
                    out.setdefault(m.group(1), m.group(2))
    return out


def _kind(scheme: str) -> str:
    return "redis" if scheme.startswith("redis") else "postgres"


def _dialect_scheme(acc: Accessory, url_schemes: dict[str, str], needs: Needs) -> None:
    """The app's own compose or env file gives the variable it reads a SQLAlchemy URL with a
    driver (postgresql+asyncpg://): the accessory's URL gets that scheme, as the app expects
    it (fastapi-sqlmodel-alembic builds its engine on that URL as it is)."""
    scheme = url_schemes.get(acc.url_env or DEFAULT_URL[acc.type], "")
    if acc.type != "postgres" or acc.scheme or "+" not in scheme:
        return
    acc.scheme = scheme
    needs.notes = [n for n in needs.notes if "wants a postgresql+asyncpg:// URL" not in n.text]
    needs.found.append(f'[accessories.{acc.name}] scheme = "{scheme}"  (the app\'s own '
                       f"settings give {acc.url_env or DEFAULT_URL[acc.type]} a {scheme}:// URL)")


def _wire(kinds: set[str], variables: dict[str, Var], needs: Needs,
          url_values: dict[str, str]) -> set[str]:
    """Variables that name an accessory's parts get them; returns the names wired."""
    wired: set[str] = set()
    for acc in needs.accessories:
        parts = PARTS[acc.type]
        named = [v for v in variables if v in url_values and _kind(url_values[v]) == acc.type and
                 not any(v in names for names in parts.values())]
        urls = [v for v in [*parts["url"], *sorted(named)] if v in variables]
        if urls and DEFAULT_URL[acc.type] not in urls:
            acc.url_env = urls[0]
        for part, names in {**parts, "url": [*parts["url"], *sorted(named)]}.items():
            for name in names:
                if name in variables and name != (acc.url_env or DEFAULT_URL[acc.type]):
                    acc.env[name] = part
        wired |= {DEFAULT_URL[acc.type], *(urls[:1]), *acc.env}
        reads = sorted({*urls, *acc.env})
        gives = ", ".join(reads) if reads else acc.url_env or DEFAULT_URL[acc.type]
        needs.found.append(f'[accessories.{acc.name}] type = "{acc.type}"  ({acc.why}); the '
                           f"app gets {gives}")
        _default_port(acc, urls, needs)
        _dialect_scheme(acc, url_values, needs)
        if not reads:
            needs.notes.append(Note(
                f"the app reads no {acc.type} variable Headway knows: it gets "
                f"{DEFAULT_URL[acc.type]}; if its settings name their own server, point them "
                "at it", f'[accessories.{acc.name}] url_env = "VAR" or env = {{ VAR = "host" }}'))
    return wired if kinds else set()


def _default_port(acc: Accessory, urls: list[str], needs: Needs) -> None:
    """An app that reads the server's host but neither its port nor its URL connects to the
    default port: the accessory listens there (a free port would never be reached)."""
    parts = set(acc.env.values())
    if urls or "host" not in parts or "port" in parts:
        return
    acc.port = DEFAULT_PORT[acc.type]
    host = next(k for k, v in acc.env.items() if v == "host")
    needs.found.append(f"[accessories.{acc.name}] port = {acc.port}  (the app reads {host} but "
                       f"no port: it connects to {acc.type}'s default port)")


def _signing_reads(files: dict[str, str]) -> frozenset[str]:
    """Variables the Python code reads into its SECRET_KEY / secret_key, whatever their name."""
    return frozenset(m.group(1) for name, body in files.items() if name.endswith(".py")
                     for m in KEY_FROM.finditer(body))


def _classify(variables: list[Var], needs: Needs, signing: frozenset[str] = frozenset()) -> None:
    for var in sorted(variables, key=lambda v: v.name):
        if var.name in SIGNING_KEYS or SIGNING.search(var.name) or var.name in signing:
            # its default in the code would be production's key; any random value will do,
            # so Headway makes one once rather than asking for it
            needs.generated.append(var)
        elif SECRET.search(var.name):
            (needs.optional_secrets if var.optional else needs.secrets).append(var)
        elif var.name in DEV_FLAGS:
            needs.unset.append(Var(var.name, var.where, True, None))
        elif LOG_TO_STDOUT.match(var.name) and not var.example:
            why = f"{var.where}: the log goes to stdout, which `headway logs` shows"
            needs.env[var.name] = ("1", why)
        elif var.name in ENV_NAMES and (var.example or "").lower() in DEV_NAMES:
            why = f"not {var.example!r} as in {var.example_file}: a production deploy"
            needs.env[var.name] = ("production", why)
        elif var.example is not None and not PLACEHOLDER.search(var.example) and \
                "localhost" not in var.example and "127.0.0.1" not in var.example:
            needs.env[var.name] = (var.example, var.example_file)
        else:
            needs.unset.append(var)
    needs.found += [f'[secrets] {v.name} = "{GENERATED}"  (a signing key, read at {v.where}: '
                    "made once at the first deploy, kept in the secret store)"
                    for v in needs.generated]
    if needs.secrets:
        names = ", ".join(f'"{v.name}"' for v in needs.secrets)
        needs.found.append(f"[app] secrets = [{names}]  (set each: headway secrets set NAME)")
    needs.found += [f'[env] {k} = "{v}"  ({w})' for k, (v, w) in needs.env.items()]
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
    if example := variables[name].example:  # local names: the router answers on them
        needs.env[name] = (example, variables[name].example_file)
        needs.found.append(f'[env] {name} = "{example}"  ({variables[name].example_file})')
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
    candidates = migrations.candidates(folder, found, deps)
    if not candidates:
        return
    command, why = needs.release = candidates[0]
    needs.found.append(f'[release] command = "{command}"  ({why})')
    env, notes = migrations.checks(folder, found, command)
    needs.env |= env
    needs.notes += [Note(text, key) for text, key in notes]
    for other, where in candidates[1:]:
        if other.startswith(command) or command.startswith(other):
            continue
        needs.notes.append(Note(f"also found {where}: not used, the release command is "
                                f"{command!r}", f'[release] command = "{other}"'))


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


def _listen_var(files: dict[str, str], variables: dict[str, Var], needs: Needs) -> None:
    """The server listens on a variable of its own rather than PORT: it gets $PORT there
    (and that variable's example value, a development port, is never written)."""
    for name, body in files.items():
        for m in LISTEN_VAR.finditer(body):
            var = m.group(1)
            if var != "PORT" and var in variables and not any(
                    var in names for parts in PARTS.values() for names in parts.values()):
                del variables[var]
                needs.port_env = (var, f"{name}:{_line(body, m.start())}")
                needs.found.append(f"[processes.web] command starts with env {var}=$PORT  (the "
                                   f"server listens on {var}, {needs.port_env[1]})")
                return


def _made_folders(files: dict[str, str], needs: Needs) -> None:
    """Folders the app creates under its working directory: kept as volumes (a log folder
    needs none when the log goes to stdout)."""
    to_stdout = any(LOG_TO_STDOUT.match(name) for name in needs.env)
    for name, body in files.items():
        for m in MKDIR.finditer(body):
            path = m.group(1) or m.group(2)
            if not (to_stdout and path.rstrip("s") == "log"):
                _volume(path, f"{name}:{_line(body, m.start())} creates it", needs)


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
        needs.found.append(f'[volumes] {name} = "{path}"  (kept across releases: {why})')
