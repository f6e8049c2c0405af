"""The agent's one HTTP app at its metrics address: /metrics is prometheus_client's app,
unchanged; with [observe] dashboard on, the rest is the dashboard (pages, their JSON, static
files, and POST actions). Served by stdlib wsgiref, a thread per request.

Never shows a traceback (an error is a short 500), never serves the dashboard to a Host that
is not its own address (DNS rebinding), and never acts on a request `actions.refusal` refuses."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from importlib import resources
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from headway.dashboard import actions, pages, views
from headway.errors import StoreError
from headway.router import HAProxy
from headway.store import Store

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
NAME = r"[a-z][a-z0-9-]{0,39}"
APP = re.compile(rf"/(api/)?app/({NAME})/({NAME})(?:/logs/([A-Za-z0-9_.-]+))?")
ACTION = re.compile(rf"/api/app/({NAME})/({NAME})/({'|'.join(actions.ACTIONS)})")
STATIC = {"/static/dash.js": "application/javascript; charset=utf-8",
          "/static/dash.css": "text/css; charset=utf-8"}
HEADERS = [("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"),
           ("Referrer-Policy", "no-referrer"), ("X-Frame-Options", "DENY"),
           ("Content-Security-Policy", ("default-src 'self'; frame-ancestors 'none'; "
                                        "form-action 'none'; base-uri 'none'"))]
CHART_TTL = 5.0  # seconds a chart is reused: a page polls every 2 s


class Dashboard:
    def __init__(self, home: Any, metrics: WSGIApp, *, address: str, port: int,
                 enabled: bool, log: Callable[[str], None] = lambda message: None) -> None:
        self.home, self.metrics, self.enabled, self.log = home, metrics, enabled, log
        self.hosts = actions.Hosts(address, port)
        self._charts: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if not self.enabled or path == "/metrics":
            return self.metrics(environ, start)
        if environ.get("HTTP_HOST") not in self.hosts:
            return _send(start, "421 Misdirected Request", "text/plain", b"unknown Host\n")
        try:
            return self._route(environ, start, path)
        except StoreError:
            return _json(start, "503 Service Unavailable", {"error": "the store is busy"})
        except Exception as exc:  # noqa: BLE001 - no traceback reaches a browser
            self.log(f"dashboard: {path}: {type(exc).__name__}: {exc}")
            return _json(start, "500 Internal Server Error", {"error": "internal error"})

    def _route(self, environ: dict[str, Any], start: Callable[..., Any],
               path: str) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if ACTION.fullmatch(path) or method not in {"GET", "HEAD"}:
            return self._act(environ, start, path)
        if path in STATIC:
            body = resources.files("headway.dashboard").joinpath(
                "static", path.rsplit("/", 1)[1]).read_bytes()
            return _send(start, "200 OK", STATIC[path], body)
        if path in {"/", "/api/overview"}:
            with _store(self.home) as store:
                html = pages.overview(views.overview(store))
            return self._answer(start, path, "Apps", html, "/api/overview")
        m = APP.fullmatch(path)
        if m:
            return self._app(start, path, m.group(2), m.group(3), m.group(4))
        return _send(start, "404 Not Found", "text/plain", b"not found\n")

    def _app(self, start: Callable[..., Any], path: str, app: str, env: str,
             inst: str | None) -> Iterable[bytes]:
        with _store(self.home) as store:
            if inst:
                lines = views.log_tail(store, app, env, inst)
                html = None if lines is None else pages.logs(app, env, inst, lines)
            else:
                view = views.app_view(store, HAProxy(self.home), app, env)
                html = None if view is None else pages.app(view, self._chart(store, app, env))
        if html is None:
            return _send(start, "404 Not Found", "text/plain", b"no such app or instance\n")
        poll = "/api" + path.removeprefix("/api")
        return self._answer(start, path, f"{app} ({env})", html, poll)

    def _answer(self, start: Callable[..., Any], path: str, title: str, html: str,
                poll: str) -> Iterable[bytes]:
        if path.startswith("/api/"):
            return _json(start, "200 OK", {"html": html})
        return _send(start, "200 OK", "text/html; charset=utf-8",
                     pages.page(title, html, poll=poll).encode())

    def _chart(self, store: Store, app: str, env: str) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            cached = self._charts.get((app, env))
        if cached and now - cached[0] < CHART_TTL:
            return cached[1]
        chart = views.chart(store, app, env)
        with self._lock:
            self._charts[(app, env)] = (now, chart)
        return chart

    def _act(self, environ: dict[str, Any], start: Callable[..., Any],
             path: str) -> Iterable[bytes]:
        req = actions.Request(method=environ.get("REQUEST_METHOD", "GET"),
                              host=environ.get("HTTP_HOST"), origin=environ.get("HTTP_ORIGIN"),
                              fetch_site=environ.get("HTTP_SEC_FETCH_SITE"),
                              token=environ.get("HTTP_X_HEADWAY_TOKEN") or _form_token(environ))
        m = ACTION.fullmatch(path)
        why = actions.refusal(self.home, req, self.hosts) if m else "no such action"
        if why:
            status = "404 Not Found" if m is None else "403 Forbidden"
            if m is not None:
                self.log(f"dashboard: {m.group(3)} of {m.group(1)} ({m.group(2)}) refused: "
                         f"{why} (client {environ.get('REMOTE_ADDR', '?')})")
            return _json(start, status, {"error": why})
        assert m is not None
        app, env, action = m.groups()
        self.log(f"dashboard: {action} of {app} ({env}) from {environ.get('REMOTE_ADDR', '?')}")
        with _store(self.home) as store:
            if not any((a["app"], a["env"]) == (app, env) for a in store.apps()):
                return _json(start, "404 Not Found", {"error": f"{app} ({env}) is not here"})
            result = actions.act(store, app, env, action,
                                 peer=str(environ.get("REMOTE_ADDR", "?")))
        return _json(start, "200 OK" if result.ok else "409 Conflict",
                     {"ok": result.ok, "message": result.message})


def _form_token(environ: dict[str, Any]) -> str | None:
    """The token from a urlencoded form body (a plain <form> POST), if that is what came."""
    if not str(environ.get("CONTENT_TYPE", "")).startswith("application/x-www-form-urlencoded"):
        return None
    from urllib.parse import parse_qs

    try:
        size = min(int(environ.get("CONTENT_LENGTH") or 0), 4096)
    except ValueError:
        return None
    form = parse_qs(bytes(environ["wsgi.input"].read(size)).decode(errors="replace"))
    given = form.get("token")
    return given[0] if given else None


class _store:
    """A store connection for one request (the server's threads share none)."""

    def __init__(self, home: Any) -> None:
        self.home = home

    def __enter__(self) -> Store:
        self.store = Store(self.home, timeout=2.0)
        return self.store

    def __exit__(self, *exc: object) -> None:
        self.store.close()


def _send(start: Callable[..., Any], status: str, kind: str, body: bytes) -> list[bytes]:
    start(status, [("Content-Type", kind), ("Content-Length", str(len(body))), *HEADERS])
    return [body]


def _json(start: Callable[..., Any], status: str, data: dict[str, Any]) -> list[bytes]:
    return _send(start, status, "application/json", json.dumps(data).encode())


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not logged: the agent's log is for what it does."""


def serve(address: str, port: int, app: WSGIApp) -> WSGIServer:
    """A threaded WSGI server on address:port, serving from a daemon thread."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        address_family = family

    server = make_server(address, port, app, Server, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
