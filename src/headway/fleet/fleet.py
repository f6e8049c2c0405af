"""One fleet as the control machine sees it: its hosts, how to reach them, and the few
things done on each (probe, the host's own `headway` CLI, the helpers of fleet/remote.py, the
fleet lock), run on several hosts at once where that is safe. Never prints: progress goes to
the callback the CLI supplies; never changes a host as a side effect of reading it."""

from __future__ import annotations

import getpass
import json
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from headway.errors import ConfigError, HeadwayError, LockedError
from headway.fleet import ssh
from headway.fleet.hosts import Host, fleet_hosts, parse_host, pick
from headway.fleet.remote import build_id, version
from headway.spec.models import Spec
from headway.store.db import socket_dir

T = TypeVar("T")
HERE = Path(__file__).parent


class Progress(Protocol):
    def __call__(self, message: str, /, **fields: object) -> None: ...


def _quiet(message: str, /, **fields: object) -> None:
    pass


def connection(spec: Spec, config: Path, home: Path) -> ssh.Connection:
    """[ssh] as a Connection; the known_hosts file and shared-connection sockets are the
    control machine's, in its $HEADWAY_HOME."""
    identity = None
    if spec.ssh.identity:
        identity = (config.parent / spec.ssh.identity).expanduser().resolve()
        if not identity.is_file():
            raise ConfigError(f"{config}: ssh.identity: {identity} is not a file",
                              hint="the private key file, relative to headway.toml")
    control = socket_dir(home, "ssh")
    control.mkdir(mode=0o700, parents=True, exist_ok=True)
    (home / "fleet").mkdir(parents=True, exist_ok=True)
    jump = parse_host(spec.ssh.jump, user=spec.ssh.user) if spec.ssh.jump else None
    return ssh.Connection(known_hosts=home / "fleet" / "known_hosts", control_dir=control,
                          policy=spec.ssh.known_hosts, identity=identity, jump=jump,
                          connect_timeout=spec.ssh.connect_timeout)


@dataclass
class Fleet:
    spec: Spec
    config: Path
    env: str
    home: Path  # the control machine's $HEADWAY_HOME
    hosts: list[Host]
    conn: ssh.Connection
    progress: Progress = _quiet
    info: dict[str, dict[str, Any]] = field(default_factory=dict)  # by host name, from probe

    @classmethod
    def open(cls, spec: Spec, config: Path, env: str, home: Path, *,
             only: tuple[str, ...] = (), progress: Progress = _quiet) -> Fleet:
        return cls(spec, config, env, home, pick(fleet_hosts(spec, env), only),
                   connection(spec, config, home), progress)

    @property
    def app(self) -> str:
        return self.spec.app.name

    # running things -----------------------------------------------------------------------
    def ssh(self, host: Host, command: list[str], *, what: str, stdin: str | None = None,
            timeout: float = 600, on_line: Callable[[str], None] | None = None,
            accept_new: bool = False) -> str:
        return ssh.execute(self.conn.ssh(host, command, accept_new=accept_new), host, self.conn,
                           stdin=stdin, timeout=timeout, what=what, on_line=on_line)

    def each(self, hosts: list[Host], work: Callable[[Host], T], *,
             parallel: int | None = None) -> dict[str, T | HeadwayError]:
        """work(host) on every host, `parallel` at once (default: all); a host's Headway
        error is its result, so one host's failure never hides another's."""
        def one(host: Host) -> T | HeadwayError:
            try:
                return work(host)
            except HeadwayError as exc:
                return exc
        if not hosts:
            return {}
        with ThreadPoolExecutor(max_workers=parallel or len(hosts)) as pool:
            return dict(zip([h.name for h in hosts], pool.map(one, hosts), strict=True))

    def probe(self, host: Host) -> dict[str, Any]:
        """What the host has (probe_host.py); remembered in self.info."""
        out = self.ssh(host, ["python3", "-", self.app, self.env], what="probing it",
                       stdin=(HERE / "probe_host.py").read_text(), timeout=60)
        try:
            found: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise ConfigError(f"{host.name}: its probe answered {out[-200:]!r}",
                              hint="does the host have python3 on PATH?") from None
        self.info[host.name] = found
        return found

    def probe_all(self) -> None:
        """Probe every host; the first failure (in [servers] order) is raised, before anything
        is changed anywhere; a host without this Headway is refused too."""
        for name, result in self.each(self.hosts, self.probe).items():
            if isinstance(result, HeadwayError):
                raise result
            problem = installed_problem(name, result)
            if problem:
                raise problem

    def home_of(self, host: Host) -> str:
        return str(self.info[host.name]["home"])

    def headway(self, host: Host, args: list[str], *, what: str, stream: bool = False,
                timeout: float = 1800, env: dict[str, str] | None = None,
                on_line: Callable[[str], None] | None = None) -> str:
        """The host's own `headway --env ENV ARGS`; with `stream`, its lines as progress, with
        `on_line` to that callback. `env`: variables for it (never a secret: they are in the
        remote command line)."""
        binary = f"{self.home_of(host)}/fleet/venv/bin/headway"
        if stream:
            on_line = lambda line: self.progress(f"{host.name}: {line}",
                                                 host=host.name)
        variables = [f"{k}={v}" for k, v in (env or {}).items()]
        return self.ssh(host, ["env", "HEADWAY_FLEET_HOST=1", *variables, binary, "--env",
                               self.env, *args], what=what, timeout=timeout, on_line=on_line)

    def interactive(self, host: Host, args: list[str], *, tty: bool) -> int:
        """The host's own `headway --env ENV --app APP ARGS` on this terminal (stdin, stdout
        and stderr passed through, a TTY with `tty`); its exit code."""
        self.probe(host)
        binary = f"{self.home_of(host)}/fleet/venv/bin/headway"
        argv = self.conn.ssh(host, ["env", "HEADWAY_FLEET_HOST=1", binary, "--env", self.env,
                                    "--app", self.app, *args])
        code = subprocess.run([argv[0], *(["-t"] if tty else []), *argv[1:]],
                              check=False).returncode
        if code == 255:  # ssh's own failure, said on stderr above
            raise ssh.Unreachable(f"{host.name}: the ssh session failed",
                                  hint="`headway servers check` tests every host")
        return code

    def remote(self, host: Host, args: list[str], *, what: str,
               stdin: str | None = None) -> dict[str, Any]:
        """One of fleet/remote.py's commands on the host; its JSON answer."""
        python = f"{self.home_of(host)}/fleet/venv/bin/python"
        out = self.ssh(host, [python, "-m", "headway.fleet.remote", *args], what=what,
                       stdin=stdin, timeout=300)
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result

    # the fleet lock -----------------------------------------------------------------------
    @contextmanager
    def lock(self, what: str, *, host: Host | None = None) -> Iterator[None]:
        """The fleet's lock, held in the first host's store for as long as this command's ssh
        session lives (so a killed command or a lost laptop never leaves it behind)."""
        host = host or self.hosts[0]
        holder = f"{what} by {getpass.getuser()}@{socket.gethostname()} (pid {os.getpid()})"
        python = f"{self.home_of(host)}/fleet/venv/bin/python"
        argv = self.conn.ssh(host, [python, "-m", "headway.fleet.remote", "lock",
                                    f"fleet:{self.app}:{self.env}", holder])
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()
        try:
            answer = json.loads(line) if line else {}
        except ValueError:
            answer = {}
        if not answer.get("locked"):
            proc.stdin.close()
            proc.wait(timeout=30)
            if "holder" in answer:
                raise LockedError(f"the fleet of {self.app} ({self.env}) is locked: "
                                  f"{answer['holder']}", hint="wait for that command to "
                                  "finish; the lock goes when its ssh session ends")
            raise ssh.Unreachable(f"{host.name}: could not take the fleet lock there",
                                  hint="`headway servers check` tests every host")
        try:
            yield
        finally:
            proc.stdin.close()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()

    def close(self) -> None:
        """End the shared ssh connections (they would linger ControlPersist seconds)."""
        for host in self.hosts:
            subprocess.run(self.conn.close(host), capture_output=True, timeout=10, check=False)


def installed_problem(name: str, found: dict[str, Any]) -> HeadwayError | None:
    """Refuse a host that lacks this Headway (same version and build) in its virtualenv."""
    there = found.get("headway")
    mine = f"{version()} (build {build_id()})"
    if not there or there.get("broken"):
        return ConfigError(f"{name}: Headway is not installed there (in {found['home']}/fleet/"
                           "venv)", hint="run `headway servers setup`")
    if (there["version"], there["build"]) != (version(), build_id()):
        return ConfigError(f"{name}: runs Headway {there['version']} (build {there['build']}), "
                           f"this machine {mine}", hint="run `headway servers setup` to "
                           "install this version there")
    return None
