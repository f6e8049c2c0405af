"""The SSH transport: argv lists for the system's OpenSSH client (ssh, scp), and the one place
that runs them and turns ssh's failures into Headway errors that name the host and the fix.

Why OpenSSH rather than a Python library: it is on every control machine and CI runner, it
honours the user's ~/.ssh/config, agent and hardware keys, ControlMaster makes the many short
commands of a deploy cost one handshake per host, and its host-key checking is the one users
already trust. Headway keeps its own known_hosts file, so `strict` means exactly the keys
`headway servers trust` recorded. Never pastes a value into a shell string unquoted (the
remote command is shlex.join of an argv list), never puts a secret in argv: stdin only."""

from __future__ import annotations

import math
import shlex
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from headway.errors import ConfigError, HeadwayError, RuntimeFailure
from headway.fleet.hosts import Host

KEEPALIVE = ["-o", "ServerAliveInterval=2", "-o", "ServerAliveCountMax=3"]
UNREACHABLE = ("timed out", "no route to host", "connection refused", "could not resolve",
               "network is unreachable", "connection closed", "connection reset",
               "not responding", "broken pipe", "lost connection", "kex_exchange_identification")


class Unreachable(RuntimeFailure):
    """A host did not answer over SSH (down, cut off, wrong address or port)."""


class HostKeyRefused(ConfigError):
    """A host's SSH key is not the one recorded (unknown, or changed)."""


class LoginRefused(ConfigError):
    """A host refused the SSH key (or user) Headway logged in with."""


@dataclass(frozen=True)
class Connection:
    """How every host of one fleet is reached; `known_hosts` is Headway's own file."""

    known_hosts: Path
    control_dir: Path
    policy: str = "strict"
    identity: Path | None = None
    jump: Host | None = None
    connect_timeout: float = 10.0

    def options(self, *, accept_new: bool = False) -> list[str]:
        checking = "accept-new" if accept_new or self.policy == "accept-new" else "yes"
        opts = ["-o", "BatchMode=yes", "-o", f"StrictHostKeyChecking={checking}",
                "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "HashKnownHosts=no",
                "-o", f"ConnectTimeout={max(1, math.ceil(self.connect_timeout))}",
                *KEEPALIVE, "-o", "ControlMaster=auto",
                "-o", f"ControlPath={self.control_dir}/%C", "-o", "ControlPersist=60",
                "-o", "LogLevel=ERROR"]
        if self.identity is not None:
            opts += ["-o", f"IdentityFile={self.identity}", "-o", "IdentitiesOnly=yes"]
        if self.jump is not None:  # the jump host checked against the same known_hosts
            pairs = zip(opts[::2], opts[1::2], strict=True)  # ("-o", "Key=value") each
            own = [word for flag, value in pairs if not value.startswith("Control")
                   for word in (flag, value)]
            jump = ["ssh", *own, "-W", "%h:%p", "-p", str(self.jump.port), "--",
                    self.jump.target]
            opts += ["-o", "ProxyCommand=" + shlex.join(jump)]
        return opts

    def ssh(self, host: Host, command: list[str], *, accept_new: bool = False) -> list[str]:
        """argv running `command` on `host` (its login shell gets it shlex-quoted)."""
        return ["ssh", *self.options(accept_new=accept_new), "-p", str(host.port), "--",
                host.target, shlex.join(command)]

    def scp(self, host: Host, local: Path, remote: str) -> list[str]:
        return ["scp", "-q", *self.options(), "-P", str(host.port), "--", str(local),
                f"{host.scp_target}:{remote}"]

    def scp_from(self, host: Host, remote: str, local: Path) -> list[str]:
        return ["scp", "-q", *self.options(), "-P", str(host.port), "--",
                f"{host.scp_target}:{remote}", str(local)]

    def close(self, host: Host) -> list[str]:
        """argv ending the host's shared connection (ControlMaster) once its sessions end:
        another command of this control machine may be using it (a `status` beside a
        `deploy`; `-O exit` cut the deploy's sessions, which failed it)."""
        return ["ssh", "-o", f"ControlPath={self.control_dir}/%C", "-O", "stop",
                "-p", str(host.port), "--", host.target]


def execute(argv: list[str], host: Host, conn: Connection, *, stdin: str | None = None,
            timeout: float = 600, what: str,
            on_line: Callable[[str], None] | None = None) -> str:
    """Run an ssh/scp argv; its stdout. ssh's own failures raise Unreachable, HostKeyRefused
    or LoginRefused; a remote command's failure raises the Headway error of its exit code.
    `on_line`: each line of stdout and stderr as it comes (then the output is not returned).
    stderr goes to a file: a ControlPersist master must not hold a pipe we wait on."""
    with tempfile.TemporaryFile("w+") as errors:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin is not None
                                    else subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT if on_line else errors, text=True)
        except FileNotFoundError as exc:
            raise ConfigError(f"{argv[0]}: command not found",
                              hint="install the OpenSSH client (apt-get install openssh-client)"
                              ) from exc
        out = _communicate(proc, stdin, timeout, on_line, host, what)
        errors.seek(0)
        err = errors.read()
    if proc.returncode != 0:
        raise failure(host, conn, proc.returncode, (err or out).strip(), what)
    return out


def _communicate(proc: subprocess.Popen[str], stdin: str | None, timeout: float,
                 on_line: Callable[[str], None] | None, host: Host, what: str) -> str:
    try:
        if on_line is None:
            return proc.communicate(stdin, timeout=timeout)[0]
        assert proc.stdout is not None
        if stdin is not None and proc.stdin is not None:
            proc.stdin.write(stdin)
            proc.stdin.close()
        tail: list[str] = []
        for line in proc.stdout:
            on_line(line.rstrip("\n"))
            tail = [*tail[-14:], line]
        proc.wait(timeout=timeout)
        return "".join(tail)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        proc.wait()
        raise Unreachable(f"{host.name}: {what} took longer than {timeout:.0f}s",
                          hint="check the host (`headway servers check`)") from exc


def failure(host: Host, conn: Connection, code: int, output: str, what: str) -> HeadwayError:
    """The error for a failed ssh/scp: ssh's own (exit 255) by its message, else the remote
    command's, of the Headway error class with its exit code."""
    text, low = output.strip(), output.lower()
    tail = "\n".join(text.splitlines()[-15:])
    if "remote host identification has changed" in low:
        return HostKeyRefused(
            f"{host.name}: its SSH host key has CHANGED since it was recorded in "
            f"{conn.known_hosts}", hint="if the host was reinstalled, remove the old key "
            f"(ssh-keygen -R {_key_name(host)} -f {conn.known_hosts}) and run `headway servers "
            "trust`; otherwise someone may be impersonating it")
    if "host key verification failed" in low or "no such host key is known" in low \
            or ("host key for" in low and "not known" in low):
        return HostKeyRefused(
            f"{host.name}: its SSH host key is unknown ([ssh] known_hosts = \"strict\")",
            hint="compare its fingerprint with the host's (ssh-keygen -lf /etc/ssh/ssh_host_"
            "ed25519_key.pub on it), then `headway servers trust` records it")
    if "permission denied" in low and code == 255:
        return LoginRefused(
            f"{host.name}: refused the login ({_login(host)}): {tail.splitlines()[-1]}",
            hint="put the public key of [ssh] identity in that user's ~/.ssh/authorized_keys "
            "on the host, or set [ssh] identity / user (or user@ in [servers])")
    if code == 255 or any(word in low for word in UNREACHABLE) and code in (1, 255):
        return Unreachable(f"{host.name}: cannot be reached over SSH ({what}): "
                           f"{tail or 'no answer'}",
                           hint="check that it is up and that its address and port in "
                           "[servers] are right; `headway servers check` tests every host")
    cls = _by_exit_code().get(code, RuntimeFailure)
    return cls(f"{host.name}: {what} failed (exit {code}):\n{tail}" if tail
               else f"{host.name}: {what} failed (exit {code})")


def _login(host: Host) -> str:
    return f"user {host.user}" if host.user else "ssh's default user"


def _key_name(host: Host) -> str:
    address = host.address.strip("[]")
    return address if host.port == 22 else f"[{address}]:{host.port}"


def _by_exit_code() -> dict[int, type[HeadwayError]]:
    """Headway's error classes by exit code, so a host's failure exits as it did there."""
    found: dict[int, type[HeadwayError]] = {}
    todo: list[type[HeadwayError]] = [HeadwayError]
    while todo:
        cls = todo.pop()
        found.setdefault(cls.exit_code, cls)
        todo += [c for c in cls.__subclasses__() if c.__module__ == "headway.errors"]
    return found
