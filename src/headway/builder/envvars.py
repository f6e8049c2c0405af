"""The environment variables an app reads, for `headway init`: `os.environ[...]`,
`os.getenv`, django-environ's `env(...)`, python-decouple's `config(...)`, pydantic
BaseSettings fields, `process.env.X` (and destructuring), Prisma's `env("X")`, calls that read
one implicitly (dj_database_url.config(), a bare node-postgres Pool), and example env files.
Each is required (read with no default, outside any branch) or optional. Reads text only."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from headway.builder.appfiles import line as _line
from headway.builder.common import read

EXAMPLES = (".env.production.example", ".env.prod.example", ".env.prod-sample",
            ".env.prod.sample", ".env.example", ".env.sample", ".env.template", ".env.dist", "env.example",
            "example.env", ".env.defaults", ".env.local.example")
# variables Headway sets itself, or platforms' own
OWN_VARS = {"PORT", "HOST", "NODE_ENV", "PATH", "HOME", "PWD", "USER", "SHELL", "LANG", "TZ",
            "CI", "DEBUG_PORT", "PYTHONPATH", "VIRTUAL_ENV", "HOSTNAME", "TERM", "TMPDIR",
            "DJANGO_SETTINGS_MODULE", "WEB_CONCURRENCY", "DYNO", "FLASK_APP"}
OWN_PREFIXES = ("HEADWAY_", "npm_", "NPM_", "HEROKU_", "RENDER", "VERCEL", "RAILWAY_", "FLY_",
                "NETLIFY", "AWS_LAMBDA", "GITHUB_ACTIONS", "K_SERVICE", "KUBERNETES_", "NEXT_RUNTIME",
                "PYTEST", "JEST_", "VITE_", "WEBSITE_")  # WEBSITE_: Azure App Service

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


@dataclass(frozen=True)
class Var:
    name: str
    where: str  # "file:line" or an example file
    optional: bool = False  # the code has a default for it
    example: str | None = None  # its value in .env.example
    example_file: str = ""


def _unquote(raw: str) -> str:
    """An example file's value: a quoted one whole (its own quotes and #s kept), else up to
    a comment."""
    raw = raw.strip()
    if len(raw) > 1 and raw[0] in "\"'" and (end := raw.find(raw[0], 1)) > 0:
        return raw[1:end]
    return re.split(r"\s+#", raw)[0].strip().strip("\"'")


def variables(folder: Path, files: dict[str, str], top: Path | None = None) -> dict[str, Var]:
    """Variables the code reads (required when any read has no default) and those an example
    env file lists (in `folder`, else in `top`, the repository holding it), with its value;
    a production example's value first."""
    code: dict[str, Var] = {}
    for name, body in files.items():
        for where, var, optional in _reads(name, body):
            old = code.get(var)
            code[var] = Var(var, old.where if old else where,
                            optional and (old.optional if old else True))
    examples: dict[str, tuple[str, str]] = {}
    home = folder if any((folder / e).is_file() for e in EXAMPLES) else top or folder
    for example in EXAMPLES:
        for line in read(home / example).splitlines():
            if m := re.match(r"^\s*(?:export\s+)?([A-Z][A-Z0-9_]*)\s*=\s*(.*?)\s*$", line):
                value = _unquote(m.group(2))
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
                (m.group(2) == "," and "default" in rest) or _conditional(body, m.start()) or \
                _guarded(body, m.group(1))
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
    """A read inside an if/else/try block of Python code runs only on that branch, also from
    a continuation line of a call in that block (`r = Redis(host,\n    password=...)`)."""
    start = body.rfind("\n", 0, pos) + 1
    line = body[start:pos]
    indent = len(line) - len(line.lstrip())
    for above in reversed(body[:start].splitlines()):
        if not indent:
            return False
        stripped = above.lstrip()
        if stripped and not stripped.startswith("#") and len(above) - len(stripped) < indent:
            if stripped.startswith(("if ", "elif ", "else", "try", "except", "with ")):
                return True
            if stripped.startswith(("def ", "class ", "async def ")):
                return False
            indent = len(above) - len(stripped)
    return False


def _guarded(body: str, var: str) -> bool:
    """The code checks `"VAR" in os.environ` before it reads it: optional."""
    return re.search(rf"[\"']{var}[\"']\s+in\s+os\.environ\b", body) is not None


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
