"""What the engine needs from a router, as intent: add a server, put it in rotation at a weight,
drain it, park it in maintenance, remove it; read the live state. No router syntax here: each
driver translates the changes (HAProxy: router/haproxy.py). Implementations: HAProxy, FakeRouter
(tests). No driver imports another."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from headway.errors import RouterError


def backend_name(app: str, env: str) -> str:
    return f"be_{app}_{env}"


FULL = 100  # a server's weight when its release takes all the traffic
DEFAULT_REQUEST_TIMEOUT = 60.0  # [router] request_timeout's default
DEFAULT_HEALTH_TIMEOUT = 2.0  # [processes.web.health] timeout's default


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
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT  # longest wait for a server's answer
    health_timeout: float = DEFAULT_HEALTH_TIMEOUT  # longest wait for one check's answer


@dataclass(frozen=True)
class ServerState:
    name: str
    admin: str  # ready | drain | maint
    up: bool  # health check says UP
    sessions: int  # requests in flight
    weight: int = FULL  # its share of requests among the servers in rotation

    @property
    def serving(self) -> bool:
        """In rotation and healthy: the router sends it requests."""
        return self.admin == "ready" and self.up


def shares(weights: dict[str, int]) -> dict[str, float]:
    """Each server's percentage of requests, from the weights of the servers in rotation."""
    total = sum(weights.values())
    return {name: round(100 * w / total, 1) if total else 0.0 for name, w in weights.items()}


# Changes: what should happen to one server of a backend. Server names are instance ids.
@dataclass(frozen=True)
class Add:
    """A new server on 127.0.0.1:port, in maintenance (no traffic until Ready)."""

    server: str
    port: int
    check_interval: float


@dataclass(frozen=True)
class Ready:
    """Into rotation at `weight`, and counted healthy at once: Headway has just probed it, and a
    server leaving maintenance would otherwise wait for its next check, a gap with no server."""

    server: str
    weight: int = FULL


@dataclass(frozen=True)
class Weight:
    """A new share for a server already in rotation."""

    server: str
    weight: int


@dataclass(frozen=True)
class Drain:
    """No new requests; those in flight finish."""

    server: str


@dataclass(frozen=True)
class Maint:
    """Out of rotation, kept (a warm release, or one on its way out)."""

    server: str


@dataclass(frozen=True)
class Remove:
    """Deleted. Refused with RouterBusy while the router holds connections to it."""

    server: str


Change = Add | Ready | Weight | Drain | Maint | Remove


class RouterBusy(RouterError):
    """A server could not be removed yet: the router still holds (pooled) connections to it."""

    def __init__(self, message: str, *, servers: list[str]) -> None:
        super().__init__(message, hint="it is removed once they close (a few seconds)")
        self.servers = servers


class Router(Protocol):
    def configure(self, backends: list[Backend], *, exporter: tuple[str, int] | None = None,
                  request_log: bool = True) -> None:
        """Make the router serve exactly these backends (a reload when their set changes),
        its own Prometheus exporter at `exporter` (address, port) if given, and log each
        request to the agent unless `request_log` is off."""

    def change(self, backend: str, changes: list[Change]) -> None:
        """Apply the changes to a backend's servers together (one runtime-API exchange for
        HAProxy), in order; RouterBusy if a Remove must wait, RouterError if any is refused."""

    def servers(self, backend: str) -> dict[str, ServerState]:
        """Live state of a backend's servers."""

    def running(self) -> bool:
        """Whether the router process answers."""
