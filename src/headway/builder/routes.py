"""Find an app's own health route in its code, for `headway init`: FastAPI/Flask/Starlette
decorators, Django's root urls.py, Express/Fastify/Koa routes, NestJS controllers, Next.js API
routes. A route is only "sure" when it is declared on the app itself (or nothing in the code
mounts routers under a prefix); a route on a router that may be mounted elsewhere is only
reported, since a wrong health path fails every deploy. Reads text only; never runs the app."""

from __future__ import annotations

import re
from dataclasses import dataclass

WORDS = ("health", "healthz", "healthcheck", "health-check", "health_check", "_health",
         "up", "ping", "livez", "alive", "liveness", "readyz", "ready", "readiness",
         "heartbeat", "status")
PREFIXES = {"api", "v1", "v2", "v3", "internal", "system", "monitoring", "_", "-", "sys"}

PY_APP = re.compile(r"^[ \t]*(\w+)\s*=\s*(?:FastAPI|Flask|Starlette|Quart|Sanic|APIFlask)\(",
                    re.MULTILINE)  # indented: an app made in a factory function
PY_ROUTE = re.compile(r"@(\w+)\.(?:get|route|api_route|head)\(\s*[rf]?[\"']([^\"']+)[\"']")
PY_PREFIX = re.compile(r"\b(?:include_router|register_blueprint|APIRouter|Blueprint|Mount)\("
                       r"[^)]*\b(?:url_)?prefix\s*=\s*[\"'][^\"']+|\bMount\(\s*[\"']/\w")
PY_INCLUDE = re.compile(r"\b(\w+)\.include_router\(\s*([\w.]+)([^)]*)\)")
PY_OWN_PREFIX = re.compile(r"\b(?:APIRouter|Blueprint)\([^)]*\bprefix\s*=")
STARLETTE = re.compile(r"\bRoute\(\s*[\"']([^\"']+)[\"']")
DJANGO = re.compile(r"\b(?:path|re_path|url)\(\s*r?[\"']\^?([^\"'$]*)\$?[\"']\s*,\s*"
                    r"((?:[^()\n]|\([^()\n]*\))*)")
JS_APP = re.compile(r"(\w+)\s*=\s*(?:await\s+)?(?:express|fastify|Fastify|Koa|polka|"
                    r"new\s+(?:Hono|Elysia|Koa))\s*\(")
JS_ROUTE = re.compile(r"\b(\w+)\s*\.\s*(?:get|all|head)\(\s*['\"`]([^'\"`]+)['\"`]")
JS_OBJ_ROUTE = re.compile(r"\b(\w+)\.route\(\s*\{[^}]*?\burl\s*:\s*['\"`]([^'\"`]+)['\"`]",
                          re.DOTALL)
JS_PREFIX = re.compile(r"\.use\(\s*['\"`]/\w|\bprefix\s*:\s*['\"`]/\w|\.basePath\(|\.route\("
                       r"\s*['\"`]/\w")
NEST_CONTROLLER = re.compile(r"@Controller\(\s*(?:['\"`]([^'\"`]*)['\"`])?\s*\)")
NEST_GET = re.compile(r"@Get\(\s*(?:['\"`]([^'\"`]*)['\"`])?\s*\)")
NEST_GLOBAL = re.compile(r"setGlobalPrefix\(\s*['\"`]([^'\"`]+)['\"`]")
NEXT_ROUTE = re.compile(r"^(?:src/)?(?:app|pages)/((?:api/)?[\w-]+)/(?:route\.[jt]s|index\.[jt]sx?)$"
                        r"|^(?:src/)?pages/(api/[\w-]+)\.[jt]sx?$")


@dataclass(frozen=True)
class Route:
    path: str
    where: str  # file:line
    sure: bool  # declared where its URL is certain


def health_word(path: str) -> int | None:
    """Rank of a path as a health route (lower is better), or None."""
    if any(c in path for c in "{}<>:*()?") or not path.startswith("/"):
        return None
    parts = [p for p in path.strip("/").split("/") if p]
    if not parts or len(parts) > 3 or parts[-1].lower() not in WORDS:
        return None
    if any(p.lower() not in PREFIXES for p in parts[:-1]):
        return None
    return WORDS.index(parts[-1].lower()) * 10 + len(parts)


def find(files: dict[str, str]) -> list[Route]:
    """Health routes in the app's code (`files`: relative path -> text), best first."""
    text = "\n".join(files.values())
    py_prefixed = bool(PY_PREFIX.search(text))
    js_prefixed = bool(JS_PREFIX.search(text))
    nest_prefix = m.group(1).strip("/") if (m := NEST_GLOBAL.search(text)) else ""
    roots = {_parent(n) for n in files
             if n.endswith(("settings.py", "wsgi.py", "asgi.py")) or "/settings/" in n}
    roots |= {_parent(r) for r in roots if r.endswith("/settings")}
    routes: list[Route] = []
    unprefixed = _mounted_as_is(files)
    for name, body in files.items():
        if name.endswith("urls.py"):
            routes += _django(name, body, root=_parent(name) in roots)
        elif name.endswith(".py"):
            as_is = _stem(name) in unprefixed and not PY_OWN_PREFIX.search(body)
            routes += _python(name, body, prefixed=py_prefixed and not as_is)
        elif name.endswith((".js", ".mjs", ".cjs", ".ts", ".mts", ".jsx", ".tsx")):
            routes += _javascript(name, body, prefixed=js_prefixed, nest_prefix=nest_prefix)
    routes = [r for r in routes if health_word(r.path) is not None]
    return sorted(set(routes), key=lambda r: (not r.sure, health_word(r.path) or 0, r.where))


def _line(body: str, pos: int) -> int:
    return body.count("\n", 0, pos) + 1


def _python(name: str, body: str, *, prefixed: bool) -> list[Route]:
    apps = set(PY_APP.findall(body)) | {"app"}
    out = [Route(m.group(2), f"{name}:{_line(body, m.start())}",
                 m.group(1) in apps or not prefixed) for m in PY_ROUTE.finditer(body)]
    out += [Route(m.group(1), f"{name}:{_line(body, m.start())}", not prefixed)
            for m in STARLETTE.finditer(body)]
    return out


def _stem(name: str) -> str:
    return name.rsplit("/", 1)[-1].removesuffix(".py")


def _mounted_as_is(files: dict[str, str]) -> set[str]:
    """Modules (by file stem) whose router every `include_router` puts on the app itself with
    no prefix: `app.include_router(ping.router)`, or a router imported from `.ping`."""
    seen: dict[str, bool] = {}
    for name, body in files.items():
        if not name.endswith(".py"):
            continue
        apps = set(PY_APP.findall(body)) | {"app"}
        for m in PY_INCLUDE.finditer(body):
            receiver, target, rest = m.groups()
            if "." in target:
                stem = target.split(".")[-2]
            elif imp := re.search(rf"from\s+[\w.]*?(\w+)\s+import\s+(?:[^\n]*\bas\s+)?"
                                  rf"\(?[^\n]*\b{re.escape(target)}\b", body):
                stem = imp.group(1)
            else:
                continue
            plain = receiver in apps and "prefix" not in rest
            seen[stem] = seen.get(stem, True) and plain
    return {stem for stem, plain in seen.items() if plain}


def _parent(name: str) -> str:
    return name.rsplit("/", 1)[0] if "/" in name else ""


def _django(name: str, body: str, *, root: bool) -> list[Route]:
    """Only the project's root urls.py (next to settings.py or wsgi.py) maps to "/"; a route
    in an app's urls.py is reported, not written."""
    out = []
    for m in DJANGO.finditer(body):
        path = "/" + m.group(1).lstrip("/")
        if "include(" in m.group(2) and "health" not in m.group(2):
            continue
        if "health_check.urls" in m.group(2) and not m.group(1):
            continue
        out.append(Route(path, f"{name}:{_line(body, m.start())}", root))
    return out


def _javascript(name: str, body: str, *, prefixed: bool, nest_prefix: str) -> list[Route]:
    apps = set(JS_APP.findall(body)) | {"app", "server", "fastify"}
    out = [Route(m.group(2), f"{name}:{_line(body, m.start())}",
                 m.group(1) in apps or not prefixed)
           for m in [*JS_ROUTE.finditer(body), *JS_OBJ_ROUTE.finditer(body)]
           if m.group(1) not in {"process", "headers", "req", "res", "map", "params", "query"}]
    if (ctl := NEST_CONTROLLER.search(body)):
        for m in NEST_GET.finditer(body):
            parts = [nest_prefix, (ctl.group(1) or "").strip("/"), (m.group(1) or "").strip("/")]
            out.append(Route("/" + "/".join(p for p in parts if p),
                             f"{name}:{_line(body, m.start())}", True))
    if (page := NEXT_ROUTE.match(name)):
        out.append(Route("/" + (page.group(1) or page.group(2)), name, True))
    return out
