"""The dashboard's actions (rollback, promote, abort): who may (the token), from where (Origin
and Host: no cross-site form or rebound DNS name can post), and running them through the same
`headway` command a person types, as "dashboard", so each is journaled and recorded exactly as
from the CLI, plus a dashboard.<action> event.

Never acts on a refused request, and never logs or returns the token."""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from headway import runner
from headway.errors import HeadwayError
from headway.store import Store

TOKEN_FILE = "dashboard.token"
ACTIONS = ("rollback", "promote", "abort")
TIMEOUT = 120.0  # a cold rollback restarts instances and waits for health


def token_path(home: Path) -> Path:
    return home / TOKEN_FILE


def token(home: Path, *, rotate: bool = False) -> str:
    """The dashboard's token, made (0600, in the home) on first use or when rotating."""
    path = token_path(home)
    if not rotate:
        try:
            existing = path.read_text().strip()
            if existing:
                return existing
        except FileNotFoundError:
            pass
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = secrets.token_urlsafe(32)
    tmp = path.with_name(TOKEN_FILE + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    os.replace(tmp, path)
    return value


def token_matches(home: Path, given: str | None) -> bool:
    """Whether `given` is the token, compared in constant time; no token file: never."""
    try:
        expected = token_path(home).read_text().strip()
    except OSError:
        return False
    return bool(expected and given) and hmac.compare_digest(
        expected.encode(), (given or "").encode())


@dataclass(frozen=True)
class Request:
    """What the checks need of an HTTP request."""

    method: str
    host: str | None
    origin: str | None
    fetch_site: str | None  # Sec-Fetch-Site
    token: str | None


def refusal(home: Path, req: Request, hosts: Hosts) -> str | None:
    """Why the request may not act (None: it may)."""
    if req.method != "POST":
        return "actions are POST only"
    if req.host not in hosts:
        return "Host is not this dashboard's address"
    if req.origin is not None and req.origin != f"http://{req.host}":
        return "Origin is not this dashboard"
    if req.fetch_site not in {None, "same-origin", "none"}:
        return "cross-site request"
    if not token_matches(home, req.token):
        return "a valid dashboard token is required (`headway dashboard token`)"
    return None


class Hosts:
    """The Host header values that name this dashboard: its address and port (and localhost
    on loopback); bound to every address (0.0.0.0, ::), any IP address with its port. A name
    is never taken on trust: a page of another site can make any name resolve here."""

    def __init__(self, address: str, port: int) -> None:
        self.port = port
        self.any = address in {"0.0.0.0", "::"}
        host = f"[{address}]" if ":" in address else address
        self.names = {f"{host}:{port}"}
        if address in {"127.0.0.1", "::1"}:
            self.names |= {f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"}

    def __contains__(self, host: object) -> bool:
        if not isinstance(host, str):
            return False
        if host in self.names:
            return True
        name, _, port = host.rpartition(":")
        if not self.any or port != str(self.port):
            return False
        try:
            ipaddress.ip_address(name.removeprefix("[").removesuffix("]"))
        except ValueError:
            return False
        return True


@dataclass(frozen=True)
class Result:
    ok: bool
    message: str


def act(store: Store, app: str, env: str, action: str, *, peer: str) -> Result:
    """Run `headway --app APP --env ENV ACTION` as "dashboard" and record it as an event."""
    if action not in ACTIONS:
        return Result(False, f"unknown action {action!r}")
    store.event(app, env, f"dashboard.{action}", f"{action} requested from the dashboard "
                f"(source: dashboard, client {peer})")
    env_vars = dict(os.environ, HEADWAY_HOME=str(store.home), HEADWAY_ACTOR="dashboard")
    argv = [sys.executable, "-m", "headway", "--app", app, "--env", env, action]
    try:
        out = runner.run(argv, env=env_vars, timeout=TIMEOUT, what=f"headway {action}")
    except HeadwayError as exc:
        message = exc.message.split("\n", 1)[-1].strip() or exc.message
        store.event(app, env, f"dashboard.{action}", f"{action} from the dashboard failed: "
                    f"{message.splitlines()[-1][:300]} (source: dashboard)")
        return Result(False, message)
    return Result(True, out.strip().splitlines()[-1] if out.strip() else f"{action} done")
