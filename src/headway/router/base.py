"""What the engine needs from a router: a handful of operations on named servers.
Implementations: HAProxy (runtime API), FakeRouter (tests). No driver imports another."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


def backend_name(app: str, env: str) -> str:
    return f"be_{app}_{env}"


@dataclass(frozen=True)
class Backend:
    """One app/environment as the router sees it: where it listens and its servers."""

    name: str
    port: int
    address: str
    hosts: list[str]
    default: bool
    health_path: str
    health_interval: float
    servers: list[tuple[str, int, str, int]] = field(default_factory=list)  # name, port, state, weight
    health_expect: str = "2xx"  # 2xx (or 3xx) | below-500


@dataclass(frozen=True)
class ServerState:
    name: str
    admin: str  # ready | drain | maint
    up: bool  # health check says UP
    sessions: int  # requests in flight


class Router(Protocol):
    def configure(self, backends: list[Backend], *, exporter: tuple[str, int] | None = None,
                  request_log: bool = True) -> None:
        """Make the router serve exactly these backends (a reload when their set changes),
        its own Prometheus exporter at `exporter` (address, port) if given, and log each
        request to the agent unless `request_log` is off."""

    def apply(self, commands: list[str]) -> None:
        """Run runtime-API commands in one exchange; raise RouterError if any is refused."""

    def servers(self, backend: str) -> dict[str, ServerState]:
        """Live state of a backend's servers."""

    def running(self) -> bool:
        """Whether the router process answers."""


def server_options(check_interval: float) -> str:
    """Options of every server line, in the config and in `add server` alike: servers added
    at run time do not inherit defaults, and without an idle-connection pool HAProxy loses
    keep-alive to the app (measured: p99 56 ms instead of 2.8 ms at 2 connections)."""
    inter = max(int(check_interval * 1000), 100)
    return f"check inter {inter} rise 1 fall 2 pool-max-conn -1 pool-purge-delay 5s"


# Runtime-API commands, as data. Server names are instance ids; backends from backend_name().
def add_server(backend: str, name: str, port: int, *, weight: int, check_interval: float) -> str:
    return (f"add server {backend}/{name} 127.0.0.1:{port} weight {weight} "
            + server_options(check_interval))


FULL = 100  # a server's weight when its release takes all the traffic


def enable_server(backend: str, name: str, weight: int = FULL) -> list[str]:
    """Into rotation, and UP at once: Headway has just probed it, and a server leaving
    maintenance would otherwise stay DOWN until its next check, leaving a gap with no server."""
    return [f"enable health {backend}/{name}", set_weight(backend, name, weight),
            f"set server {backend}/{name} state ready", f"set server {backend}/{name} health up"]


def set_weight(backend: str, name: str, weight: int) -> str:
    return f"set weight {backend}/{name} {weight}"


def set_state(backend: str, name: str, state: str) -> str:
    return f"set server {backend}/{name} state {state}"

