"""FakeRouter: records each change exchange and keeps server states in memory. For unit tests
of the engine's ordering only; it never proves traffic moved (integration tests do)."""

from __future__ import annotations

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


class FakeRouter:
    def __init__(self) -> None:
        self.backends: list[Backend] = []
        self.exchanges: list[tuple[str, list[Change]]] = []  # (backend, changes), in order
        self.state: dict[str, dict[str, str]] = {}  # backend -> server -> ready|drain|maint
        self.weights: dict[str, dict[str, int]] = {}
        self.busy: set[str] = set()  # servers a Remove is refused for (pooled connections)

    def configure(self, backends: list[Backend], *, exporter: tuple[str, int] | None = None,
                  request_log: bool = True) -> None:
        self.backends = backends
        self.state = {b.name: {s[0]: s[2] for s in b.servers} for b in backends}
        self.weights = {b.name: {s[0]: s[3] for s in b.servers} for b in backends}

    def change(self, backend: str, changes: list[Change]) -> None:
        self.exchanges.append((backend, list(changes)))
        state = self.state.setdefault(backend, {})
        weights = self.weights.setdefault(backend, {})
        for change in changes:
            match change:
                case Add(server):
                    state[server], weights[server] = "maint", 100
                case Ready(server, weight):
                    state[server], weights[server] = "ready", weight
                case Weight(server, weight):
                    weights[server] = weight
                case Drain(server):
                    state[server] = "drain"
                case Maint(server):
                    state[server] = "maint"
                case Remove(server) if server in self.busy:
                    raise RouterBusy(f"{backend}/{server} busy", servers=[server])
                case Remove(server):
                    state.pop(server, None)
                    weights.pop(server, None)

    def servers(self, backend: str) -> dict[str, ServerState]:
        weights = self.weights.get(backend, {})
        return {name: ServerState(name, admin, True, 0, weights.get(name, 100))
                for name, admin in self.state.get(backend, {}).items()}

    def running(self) -> bool:
        return True
