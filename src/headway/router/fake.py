"""FakeRouter: records runtime-API commands and keeps server states in memory. For unit tests
of the engine's ordering only; it never proves traffic moved (integration tests do)."""

from __future__ import annotations

from headway.router.base import Backend, ServerState


class FakeRouter:
    def __init__(self) -> None:
        self.backends: list[Backend] = []
        self.commands: list[list[str]] = []
        self.state: dict[str, dict[str, str]] = {}

    def configure(self, backends: list[Backend], *, exporter: tuple[str, int] | None = None,
                  request_log: bool = True) -> None:
        self.backends = backends
        self.state = {b.name: {s[0]: s[2] for s in b.servers} for b in backends}

    def apply(self, commands: list[str]) -> None:
        self.commands.append(commands)
        for cmd in commands:
            words = cmd.split()
            backend, _, server = words[2].partition("/")
            if words[:2] == ["add", "server"]:
                self.state.setdefault(backend, {})[server] = "maint"
            elif words[:2] == ["del", "server"]:
                self.state[backend].pop(server)
            elif words[:2] == ["set", "server"] and words[3] == "state":
                self.state[backend][server] = words[4]

    def servers(self, backend: str) -> dict[str, ServerState]:
        return {name: ServerState(name, admin, True, 0)
                for name, admin in self.state.get(backend, {}).items()}

    def running(self) -> bool:
        return True
