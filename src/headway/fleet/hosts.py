"""The hosts of a fleet, from [servers] and [ssh]: who to log in as, where, in what batches.
Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass, replace

from headway.errors import ConfigError
from headway.spec.models import SSH_TARGET, Spec


@dataclass(frozen=True)
class Host:
    """One SSH target: `name` is how headway.toml spells it, and how every message names it."""

    name: str
    address: str
    user: str | None = None
    port: int = 22
    processes: tuple[str, ...] = ()  # what it runs ([servers] roles); () = every process

    @property
    def target(self) -> str:
        """`user@address` for ssh (the port goes in -p)."""
        address = self.address.strip("[]")
        return f"{self.user}@{address}" if self.user else address

    @property
    def scp_target(self) -> str:
        """`user@address` with an IPv6 address in brackets, as scp wants it before `:path`."""
        address = f"[{self.address.strip('[]')}]" if ":" in self.address else self.address
        return f"{self.user}@{address}" if self.user else address


def parse_host(text: str, *, user: str | None = None, port: int = 22) -> Host:
    """`[user@]address[:port]`; `user` and `port` are [ssh]'s defaults for what it omits."""
    match = SSH_TARGET.fullmatch(text)
    if not match:
        raise ConfigError(f"{text!r} is not a host", hint='[user@]address[:port], e.g. '
                          '"deploy@10.0.0.5"')
    return Host(name=text, address=match.group(2), user=match.group(1) or user,
                port=int(match.group(3) or port))


def fleet_hosts(spec: Spec, env: str = "production") -> list[Host]:
    """Every host of the environment's servers ([env.ENV.servers], else [servers]), once
    each: the web hosts first, in the order written, then the others. A process listed in the
    table runs on its hosts only; one not listed runs on every web host."""
    table = spec.servers_for(env)
    where = f"env.{env}.servers" if env in spec.env_servers else "servers"
    if not table.get("web"):
        raise ConfigError(f"{where}.web: no host runs the web process", hint=f"list them: "
                          f'[{where}] web = ["deploy@10.0.0.5"]')
    runs = {name: table.get(name, table["web"]) for name in spec.processes}
    names = list(dict.fromkeys(h for hosts in (table["web"], *table.values()) for h in hosts))
    return [replace(parse_host(h, user=spec.ssh.user, port=spec.ssh.port),
                    processes=tuple(p for p, hosts in runs.items() if h in hosts))
            for h in names]


def batches(hosts: list[Host], size: int) -> list[list[Host]]:
    """Hosts in groups of `size` ([deploy] hosts_in_parallel), in order."""
    return [hosts[i:i + size] for i in range(0, len(hosts), size)]


def pick(hosts: list[Host], names: tuple[str, ...]) -> list[Host]:
    """The hosts named by --host (as in headway.toml, or by address); all when none."""
    if not names:
        return hosts
    chosen = [h for h in hosts if h.name in names or h.address in names]
    unknown = [n for n in names if not any(n in (h.name, h.address) for h in hosts)]
    if unknown:
        raise ConfigError(f"--host {unknown[0]}: not in [servers] "
                          f"({', '.join(h.name for h in hosts)})")
    return chosen
