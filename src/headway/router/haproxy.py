"""HAProxy driver: the only place that speaks HAProxy's syntax. Renders haproxy.cfg from the
backends it is given and the HTTPS sites recorded under $HEADWAY_HOME/tls (an ssl bind per
HTTPS port, and on the HTTP port the ACME HTTP-01 answers from a map and the redirect to
HTTPS); swaps certificates and challenge tokens through the runtime API, never by reload. Runs
HAProxy in master-worker mode under $HEADWAY_HOME/router with a clean
environment (nothing of the CLI's, so no secret), and turns the router's changes into runtime-API
commands (add/del server, weight, state ready|drain|maint). A config change is a master-socket
reload, which keeps listening sockets; a deploy never needs one. Every user value written into
the config is validated by the spec and single-quoted here (HAProxy expands nothing inside
single quotes). Never prints, never exits."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import shutil
import signal
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from headway.errors import RouterError
from headway.observer.requests import LOG_FORMAT
from headway.router.base import (
    Add,
    Backend,
    Change,
    Drain,
    Maint,
    Ready,
    Remove,
    RouterBusy,
    ServerState,
    Weight,
)
from headway.runner import run
from headway.store import socket_dir
from headway.tls import sites as tls_sites
from headway.tls.sites import Site

_OK = {"", "New server registered.", "Server deleted."}
_BUSY = "still has connections"  # `del server` while HAProxy keeps pooled connections to it
_ENV = ("PATH",)  # all HAProxy gets from the environment of the command that starts it


def quote(value: str) -> str:
    """One config word, single-quoted: HAProxy expands no variable and no escape inside."""
    if "'" in value or any(c.isspace() or not c.isprintable() for c in value.replace(" ", "")):
        raise RouterError(f"{value!r} cannot be written into haproxy.cfg",
                          hint="no quotes, control characters or line breaks")
    return f"'{value}'"


def server_options(check_interval: float) -> str:
    """Options of every server line, in the config and in `add server` alike: servers added
    at run time do not inherit defaults, and without an idle-connection pool HAProxy loses
    keep-alive to the app (measured: p99 56 ms instead of 2.8 ms at 2 connections). A server
    its checks mark down (hung, stopped) has its sessions cut instead of held until the
    server timeout."""
    inter = max(int(check_interval * 1000), 100)
    return (f"check inter {inter} rise 1 fall 2 pool-max-conn -1 pool-purge-delay 5s "
            "on-marked-down shutdown-sessions")


def commands(backend: str, change: Change) -> list[str]:
    """The runtime-API commands of one change."""
    match change:
        case Add(server, port, check_interval):
            return [f"add server {backend}/{server} 127.0.0.1:{port} weight 100 "
                    + server_options(check_interval)]
        case Ready(server, weight):
            return [f"enable health {backend}/{server}", f"set weight {backend}/{server} {weight}",
                    f"set server {backend}/{server} state ready",
                    f"set server {backend}/{server} health up"]
        case Weight(server, weight):
            return [f"set weight {backend}/{server} {weight}"]
        case Drain(server):
            return [f"set server {backend}/{server} state drain"]
        case Maint(server):
            return [f"set server {backend}/{server} state maint"]
        case Remove(server):
            return [f"del server {backend}/{server}"]
    raise AssertionError(f"unknown change {change!r}")


@dataclass(frozen=True)
class Https:
    """What the config needs to serve HTTPS: the sites (headway.tls.sites), the names of those
    with a certificate file, and the home whose tls/ folder holds the files."""

    home: Path
    sites: list[Site] = field(default_factory=list)
    certified: frozenset[str] = frozenset()


def render_config(backends: list[Backend], *, admin_socket: Path, log_socket: Path | None,
                  exporter: tuple[str, int] | None = None, https: Https | None = None) -> str:
    tls = _tls_backends(backends, https)
    lines = [
        "# Written by Headway from its state; edits are overwritten.",
        "global",
        f"  stats socket {quote(str(admin_socket))} mode 600 level admin",
        *([f"  log {quote(str(log_socket))} len 1024 format raw local0"] if log_socket else []),
        "  maxconn 8000",
        "  hard-stop-after 60s",
        *(["  ssl-default-bind-options ssl-min-ver TLSv1.2", "  tune.ssl.default-dh-param 2048"]
          if https and any(s.name in https.certified for s in tls.values()) else []),
        "defaults",
        "  mode http",
        "  option redispatch 1",
        "  retries 3",
        "  retry-on conn-failure empty-response response-timeout",
        "  timeout connect 2s",
        "  timeout client 60s",
        "  timeout server 60s",
        "  timeout http-keep-alive 10s",
        "  timeout queue 10s",
        "  option dontlognull",
        "  log global",
        f'  log-format "{LOG_FORMAT}"',
    ]
    if exporter:
        lines += ["", "frontend fe_router_metrics", f"  bind {_bind(*exporter)}",
                  "  no log", "  http-request use-service prometheus-exporter if { path /metrics }"]
    for (address, port), group in _by_listener(backends).items():
        lines += ["", f"frontend fe_{port}", f"  bind {_bind(address, port)}"]
        if https:
            lines += _http_tls_rules(group, tls, https)
        lines += _routes(group)
    if https:
        lines += _https_frontends(backends, tls, https)
    for be in backends:
        lines += ["", f"backend {be.name}", "  balance roundrobin",
                  f"  timeout server {max(int(be.request_timeout * 1000), 1)}ms",
                  # a check may take health.timeout: without it HAProxy allows one interval,
                  # so a saturated machine marked healthy servers down and cut their sessions
                  f"  timeout check {max(int(be.health_timeout * 1000), 1)}ms",
                  f"  option httpchk GET {quote(be.health_path)}"]
        if be.health_expect == "below-500":  # no health route: any answer shows it serves
            lines.append("  http-check expect ! rstatus ^5")
        site = tls.get(be.name)
        if site and site.hsts is not None and https and site.name in https.certified:
            lines.append("  http-response set-header Strict-Transport-Security "
                         f"max-age={int(site.hsts)} if {{ ssl_fc }}")
        for name, port, state, weight in be.servers:
            disabled = " disabled" if state == "maint" else ""
            w = 0 if state == "drain" else weight
            lines.append(f"  server {name} 127.0.0.1:{port} weight {w} "
                         f"{server_options(be.health_interval)}{disabled}")
    return "\n".join(lines) + "\n"


def _routes(group: list[Backend]) -> list[str]:
    lines = []
    for be in group:
        for host in be.hosts:
            lines.append(f"  use_backend {be.name} if {_host_is([host])}")
    default = next((b for b in group if b.default), group[0])
    return [*lines, f"  default_backend {default.name}"]


def _host_is(hosts: list[str]) -> str:
    words = " ".join(quote(h.lower()) for h in hosts)
    return f"{{ req.hdr(host),field(1,:),lower -m str {words} }}"


def _tls_backends(backends: list[Backend], https: Https | None) -> dict[str, Site]:
    """The sites of the backends being rendered, by backend name (a site whose app is gone
    is left out until the agent rewrites the list)."""
    names = {be.name for be in backends}
    return {s.backend: s for s in (https.sites if https else []) if s.backend in names}


def _http_tls_rules(group: list[Backend], tls: dict[str, Site], https: Https) -> list[str]:
    """On an HTTP listener: answer pending ACME HTTP-01 challenges from the map (before
    anything else), and send the requests of apps that have a certificate to HTTPS."""
    here = [(be, tls[be.name]) for be in group if be.name in tls]
    if not here:
        return []
    lines = ["  http-request set-header X-Forwarded-Proto http"]
    if any(site.mode == "acme" for _, site in here):
        tokens = _map_path(tls_sites.challenge_map(https.home))
        lines += [(f"  http-request set-var(txn.acme) path,field(4,/),map({tokens}) "
                  "if { path_beg /.well-known/acme-challenge/ }"),
                  ('  http-request return status 200 content-type text/plain '
                  'lf-string "%[var(txn.acme)]" if { var(txn.acme) -m found }')]
    for be, site in here:
        if site.name not in https.certified:
            continue
        port = "" if site.https_port == 443 else f":{site.https_port}"
        where = f'"https://%[req.hdr(host),field(1,:)]{port}%[capture.req.uri]"'
        others = [h for b in group if b is not be for h in b.hosts]
        if be.hosts:
            when = f" if {_host_is(be.hosts)}"
        elif be.default or len(group) == 1:  # it takes the requests no other app matches
            when = f" unless {_host_is(others)}" if others else ""
        else:
            continue  # no host of its own and not the default: no request reaches it
        lines.append(f"  http-request redirect location {where} code 301{when}")
    return lines


def _https_frontends(backends: list[Backend], tls: dict[str, Site], https: Https) -> list[str]:
    listeners: dict[tuple[str, int], list[tuple[Backend, Site]]] = {}
    for be in backends:
        site = tls.get(be.name)
        if site and site.name in https.certified:
            listeners.setdefault((be.address, site.https_port), []).append((be, site))
    lines = []
    for (address, port), items in listeners.items():
        crts = " ".join(f"crt {quote(str(tls_sites.cert_path(https.home, site)))}"
                        for _, site in items)
        lines += ["", f"frontend fe_https_{port}",
                  f"  bind {_bind(address, port)} ssl {crts} alpn h2,http/1.1",
                  "  http-request set-header X-Forwarded-Proto https",
                  *_routes([be for be, _ in items])]
    return lines


def https_listeners(backends: list[Backend], https: Https | None) -> list[tuple[str, int]]:
    tls = _tls_backends(backends, https)
    return list(dict.fromkeys((be.address, tls[be.name].https_port) for be in backends
                              if be.name in tls and https and tls[be.name].name in
                              https.certified))


def _map_path(path: Path) -> str:
    """A file path inside a sample expression, where quotes do not work: plain characters only."""
    if not re.fullmatch(r"[A-Za-z0-9/._+-]+", str(path)):
        raise RouterError(f"HEADWAY_HOME {path.parent.parent} cannot be named in haproxy.cfg "
                          "(ACME challenge map)",
                          hint="use a HEADWAY_HOME path of letters, digits and / . _ + -")
    return str(path)


def _bind(address: str, port: int) -> str:
    return quote(f"{address}:{port}")


def _by_listener(backends: list[Backend]) -> dict[tuple[str, int], list[Backend]]:
    groups: dict[tuple[str, int], list[Backend]] = {}
    for be in backends:
        groups.setdefault((be.address, be.port), []).append(be)
    return groups


class HAProxy:
    def __init__(self, home: Path, *, binary: str | None = None) -> None:
        self.home = home
        self.dir = home / "router"
        self.cfg = self.dir / "haproxy.cfg"
        # HAProxy takes a master socket path of at most 97 bytes
        self.sockets = self.dir if len(str(self.dir)) < 80 else socket_dir(self.dir, "router")
        self.admin = self.sockets / "admin.sock"
        self.master = self.sockets / "master.sock"
        self.pidfile = self.dir / "haproxy.pid"
        self.log_socket = self.sockets / "log.sock"
        self.binary = binary or os.environ.get("HEADWAY_HAPROXY", "haproxy")

    # Router protocol -------------------------------------------------------------------------
    def configure(self, backends: list[Backend], *, exporter: tuple[str, int] | None = None,
                  request_log: bool = True) -> None:
        https = self.https()
        text = render_config(backends, admin_socket=self.admin,
                             log_socket=self.log_socket if request_log else None,
                             exporter=exporter, https=https)
        if self.running() and self.cfg.exists() and self.cfg.read_text() == text:
            return
        self._check_ports(backends, exporter, https_listeners(backends, https))
        if any(site.mode == "acme" for site in https.sites):
            tokens = tls_sites.challenge_map(self.home)
            tokens.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tokens.touch()  # HAProxy loads the map at start; tokens come by the runtime API
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sockets.mkdir(parents=True, exist_ok=True, mode=0o700)
        candidate = self.dir / "haproxy.cfg.new"
        candidate.write_text(text)
        run([self._binary(), "-c", "-q", "-f", str(candidate)], error=RouterError,
            what="haproxy config check", env=self._environment())
        os.replace(candidate, self.cfg)
        if self.running():
            self._reload()
        else:
            self._start()

    def change(self, backend: str, changes: list[Change]) -> None:
        if not changes:
            return
        text = "; ".join(c for change in changes for c in commands(backend, change))
        out = self._exchange(self.admin, text)
        bad = [line for line in out.splitlines() if line.strip() not in _OK]
        if any(_BUSY in line for line in bad):
            raise RouterBusy(f"HAProxy keeps connections to {backend} servers",
                             servers=[c.server for c in changes if isinstance(c, Remove)])
        if bad:
            raise RouterError(f"HAProxy refused `{text}`: {' '.join(bad)}")

    def servers(self, backend: str) -> dict[str, ServerState]:
        stat = self._exchange(self.admin, "show stat")
        states = self._exchange(self.admin, f"show servers state {backend}")
        admin: dict[str, str] = {}
        for line in states.splitlines()[2:]:
            parts = line.split()
            if len(parts) > 6:
                admin[parts[3]] = _admin_state(int(parts[6]))
        result = {}
        for row in csv.DictReader(io.StringIO(stat.lstrip("# "))):
            if row["pxname"] == backend and row["svname"] not in {"FRONTEND", "BACKEND"}:
                name = row["svname"]
                result[name] = ServerState(name, admin.get(name, "ready"),
                                           row["status"].startswith("UP"), int(row["scur"] or 0),
                                           int(row["weight"] or 0))
        return result

    # HTTPS (headway.tls) ---------------------------------------------------------------------
    def https(self) -> Https:
        sites = tls_sites.load(self.home)
        return Https(self.home, sites, frozenset(s.name for s in sites
                                                 if tls_sites.installed(self.home, s)))

    def serves(self, cert: Path) -> bool:
        """Whether the running HAProxy has this certificate file loaded."""
        return str(cert) in self._exchange(self.admin, "show ssl cert").splitlines()

    def replace_certificate(self, cert: Path, pem: str) -> None:
        """A loaded certificate's new chain and key, in one runtime-API transaction: no
        reload, and connections open on the old one finish on it."""
        out = self._exchange(self.admin, f"set ssl cert {cert} <<\n{pem.strip()}\n")
        if "Transaction created" not in out and "Transaction updated" not in out:
            raise RouterError(f"HAProxy refused the new certificate for {cert.name}: "
                              f"{out.strip()}")
        out = self._exchange(self.admin, f"commit ssl cert {cert}")
        if "Success!" not in out:
            self._exchange(self.admin, f"abort ssl cert {cert}")
            raise RouterError(f"HAProxy did not commit the new certificate for {cert.name}: "
                              f"{out.strip()}")

    def put_challenge(self, token: str, answer: str) -> None:
        """Answer GET /.well-known/acme-challenge/TOKEN on the HTTP port with `answer`."""
        self._map(f"add map {tls_sites.challenge_map(self.home)} {token} {answer}")

    def drop_challenge(self, token: str) -> None:
        self._map(f"del map {tls_sites.challenge_map(self.home)} {token}")

    def _map(self, command: str) -> None:
        if not re.fullmatch(r"[a-z]+ map \S+ [A-Za-z0-9_-]+( [A-Za-z0-9_.-]+)?", command):
            raise RouterError("an ACME challenge token HAProxy cannot take")
        out = self._exchange(self.admin, command).strip()
        if out:
            raise RouterError(f"HAProxy refused `{command.split()[0]} map`: {out}",
                              hint="is [router] tls set in the deployed release?")

    def running(self) -> bool:
        try:
            self._exchange(self.admin, "show info", timeout=2)
            return True
        except RouterError:
            return False

    # process management ----------------------------------------------------------------------
    def stop(self) -> None:
        pid = self._pid()
        if pid:
            try:
                os.kill(pid, signal.SIGUSR1)  # soft stop: finish in-flight requests
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.05)
            if _alive(pid):  # a kept-alive client still holds it: stop now, not at hard-stop-after
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and _alive(pid):
                    time.sleep(0.05)
        for path in (self.admin, self.master, self.pidfile):
            path.unlink(missing_ok=True)
        if self.sockets != self.dir and not self.log_socket.exists():  # the agent's is gone too
            shutil.rmtree(self.sockets, ignore_errors=True)

    def _binary(self) -> str:
        found = shutil.which(self.binary) or shutil.which(self.binary, path="/usr/sbin:/sbin")
        if not found:
            raise RouterError(f"HAProxy is not installed (no `{self.binary}` on PATH)",
                              hint="install it: apt-get install -y haproxy")
        return found

    def _environment(self) -> dict[str, str]:
        """Only what HAProxy needs: an `env:` secret source or anything else in the environment
        of the command that starts it must not live on in a long-running process."""
        return {k: os.environ[k] for k in _ENV if k in os.environ} | {
            "HEADWAY_HOME": str(self.dir.parent)}  # says whose it is, in ps and /proc

    def _start(self) -> None:
        for path in (self.admin, self.master):
            path.unlink(missing_ok=True)
        run([self._binary(), "-W", "-D", "-S", f"{self.master},mode,600", "-f", str(self.cfg),
             "-p", str(self.pidfile)], error=RouterError, what="starting HAProxy",
            env=self._environment(), cwd=self.dir)
        self._wait_ready(old_pid=None)

    def _reload(self) -> None:
        old = self._worker_pid()
        try:
            self._exchange(self.master, "reload", timeout=5)
        except RouterError:
            pid = self._pid()
            if not pid:
                raise
            os.kill(pid, signal.SIGUSR2)  # same reload, by signal
        self._wait_ready(old_pid=old)

    def _wait_ready(self, *, old_pid: int | None) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pid = self._worker_pid()
            if pid and pid != old_pid:
                return
            time.sleep(0.05)
        raise RouterError(f"HAProxy did not come up within 10s; see {self.cfg}")

    def _worker_pid(self) -> int | None:
        try:
            info = self._exchange(self.admin, "show info", timeout=1)
        except RouterError:
            return None
        for line in info.splitlines():
            if line.startswith("Pid:"):
                return int(line.split(":")[1])
        return None

    def _pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _check_ports(self, backends: list[Backend], exporter: tuple[str, int] | None,
                     https: Sequence[tuple[str, int]] = ()) -> None:
        """A port some other program holds makes HAProxy fail to start: say which, up front."""
        current = self.cfg.read_text() if self.cfg.exists() and self.running() else ""
        for address, port in [*_by_listener(backends), *([exporter] if exporter else []),
                              *https]:
            if f"bind {_bind(address, port)}\n" in current or \
                    f"bind {_bind(address, port)} ssl " in current:
                continue
            with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((address, port))
                except OSError as exc:
                    key = "[observe] router_metrics_port" if (address, port) == exporter \
                        else "[router] https_port" if (address, port) in https else "[router] port"
                    raise RouterError(f"router port {address}:{port} is in use ({exc.strerror})",
                                      hint=f"stop what listens there, or change {key}"
                                      ) from exc

    @staticmethod
    def _exchange(path: Path, command: str, *, timeout: float = 10) -> str:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(timeout)
                s.connect(str(path))
                s.sendall(command.encode() + b"\n")
                chunks = []
                while chunk := s.recv(65536):
                    chunks.append(chunk)
        except OSError as exc:
            raise RouterError(f"HAProxy runtime API at {path}: {exc}") from exc
        return b"".join(chunks).decode()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def _admin_state(bits: int) -> str:
    """srv_admin_state: maint flags are 0x01 forced, 0x02 inherited, 0x04 config, 0x20 dns;
    drain flags 0x08 forced, 0x10 inherited."""
    if bits & 0x27:
        return "maint"
    return "drain" if bits & 0x18 else "ready"
