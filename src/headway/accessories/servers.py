"""Drivers for the accessory servers Headway runs as local processes: PostgreSQL (Debian's
postgresql binaries, run as the `postgres` user when Headway is root, since PostgreSQL refuses
root) and Redis. Each driver turns an accessory into argv lists and runs them through `run`.

Passwords never reach argv or a file: PostgreSQL gets a SCRAM verifier computed here (never the
password), Redis reads its config, `requirepass` included, from stdin, and redis-cli takes the
password from REDISCLI_AUTH. Local tools reach PostgreSQL through a unix socket in a folder only
its owner can open."""

from __future__ import annotations

import base64
import glob
import hashlib
import hmac
import os
import pwd
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from headway.errors import ConfigError, RuntimeFailure
from headway.secrets import Secret
from headway.spec.models import AccessorySpec
from headway.store import pid_alive, socket_dir


@dataclass
class Accessory:
    app: str
    env: str
    name: str
    spec: AccessorySpec
    port: int
    base: Path  # Headway's folder for it: run/ (sockets, pid), server.log, data/ by default

    @property
    def data(self) -> Path:
        return Path(self.spec.path) if self.spec.path else self.base / "data"

    @property
    def sockets(self) -> Path:
        """PostgreSQL's socket folder."""
        return socket_dir(self.base, "pg")

    @property
    def log(self) -> Path:
        return self.base / "run" / "server.log"

    @property
    def database(self) -> str:
        return self.spec.database or self.app.replace("-", "_")

    @property
    def user(self) -> str:
        return self.spec.user or self.app.replace("-", "_")

    @property
    def label(self) -> str:
        return f"accessory {self.name} ({self.spec.type}) of {self.app} ({self.env})"


def run(argv: list[str], *, what: str, env: dict[str, str] | None = None, stdin: str = "",
        timeout: float = 120, log: Path | None = None) -> str:
    """Run one command; its stdout, or RuntimeFailure naming `what` with its output (and the
    end of the server's `log`)."""
    try:
        done = subprocess.run(argv, input=stdin.encode(), capture_output=True, timeout=timeout,
                              env=os.environ | (env or {}), check=False)
    except FileNotFoundError:
        raise RuntimeFailure(f"{what}: {argv[0]} is not installed",
                             hint="scripts/setup.sh installs postgresql and redis-server") from None
    except subprocess.TimeoutExpired:
        raise RuntimeFailure(f"{what}: {Path(argv[0]).name} did not finish in {timeout:.0f}s")\
            from None
    if done.returncode != 0:
        out = (done.stderr or done.stdout).decode(errors="replace").strip()
        if log and log.exists():
            out += f"\n{log}:\n" + "".join(log.read_text(errors="replace").splitlines(True)[-8:])
        tool = Path(argv[argv.index("--") + 1] if "--" in argv else argv[0]).name
        raise RuntimeFailure(f"{what}: {tool} exited {done.returncode}",
                             hint=out[-2000:] or None)
    return done.stdout.decode(errors="replace")


def wait_for(check: Callable[[], bool], *, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeFailure(f"{what}: not answering after {timeout:.0f}s")
        time.sleep(0.1)


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class Driver(Protocol):
    def version(self, acc: Accessory) -> str: ...
    def init(self, acc: Accessory, password: Secret) -> None: ...
    def start(self, acc: Accessory, password: Secret, *, persist: bool = True) -> None: ...
    def stop(self, acc: Accessory, password: Secret) -> None: ...
    def pid(self, acc: Accessory) -> int | None: ...
    def healthy(self, acc: Accessory, password: Secret) -> bool: ...
    def url(self, acc: Accessory, password: Secret) -> str: ...
    def dump_argv(self, acc: Accessory, password: Secret) -> tuple[list[str], dict[str, str]]: ...
    def shell_argv(self, acc: Accessory, password: Secret,
                   args: list[str]) -> tuple[list[str], dict[str, str]]: ...
    def restore(self, acc: Accessory, password: Secret, dump: Path, *,
                into: str | None) -> str: ...
    def check(self, dump: Path, scratch: Path) -> dict[str, int]: ...


# PostgreSQL -----------------------------------------------------------------------------------
def scram_verifier(password: str, *, iterations: int = 4096) -> str:
    """What PostgreSQL stores for a SCRAM-SHA-256 password (RFC 5803); it accepts this in place
    of the password, so the password itself is never sent to the server."""
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client = hmac.new(salted, b"Client Key", "sha256").digest()
    server = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = base64.b64encode
    return (f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}$"
            f"{b64(hashlib.sha256(client).digest()).decode()}:{b64(server).decode()}")


def _reachable(folder: Path, user: pwd.struct_passwd) -> bool:
    groups = set(os.getgrouplist(user.pw_name, user.pw_gid))
    for parent in folder.resolve().parents:
        st = parent.stat()
        bit = (0o100 if st.st_uid == user.pw_uid else 0o010 if st.st_gid in groups else 0o001)
        if not st.st_mode & bit:
            return False
    return True


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Postgres:
    def bin(self, tool: str, version: str | None = None) -> str:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                       key=lambda p: int(re.sub(r"\D", "", p.split("/")[-2]) or 0))
        if version:
            match = [p for p in found if p.split("/")[-2] == version]
            if not match:
                have = ", ".join(p.split("/")[-2] for p in found) or "none"
                raise ConfigError(f"PostgreSQL {version} is not installed here (installed: "
                                  f"{have})", hint=f"remove `version` or install "
                                  f"postgresql-{version}")
            found = match
        path = f"{found[-1]}/{tool}" if found else shutil.which(tool)
        if not path:
            raise RuntimeFailure(f"PostgreSQL's {tool} is not installed",
                                 hint="apt-get install postgresql (scripts/setup.sh does)")
        return path

    def version(self, acc: Accessory) -> str:
        try:
            return Path(self.bin("postgres", acc.spec.version)).parent.parent.name
        except ConfigError as exc:
            exc.message = f"accessories.{acc.name}.version: {exc.message}"
            raise

    def owner(self, argv: list[str], acc: Accessory) -> list[str]:
        """PostgreSQL's server tools refuse root: as root, run them as `postgres`. When a
        folder above its folders is closed to it (root's $HEADWAY_HOME under /root), it gets the
        one capability to look through folders (CAP_DAC_READ_SEARCH) rather than Headway
        opening /root to everyone."""
        if os.geteuid() != 0:
            return argv
        user = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
        postgres = pwd.getpwnam("postgres")
        if not (_reachable(acc.base, postgres) and _reachable(acc.data, postgres)):
            user += ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
        return [*user, "--", *argv]

    def _own(self, *paths: Path) -> None:
        for path in paths:
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
            path.chmod(0o700)
            if os.geteuid() == 0:
                user = pwd.getpwnam("postgres")
                os.chown(path, user.pw_uid, user.pw_gid)

    def tool(self, acc: Accessory, tool: str) -> list[str]:
        return [self.bin(tool, acc.spec.version), "-h", str(acc.sockets), "-p",
                str(acc.port), "-U", acc.user]

    def _sql(self, acc: Accessory, sql: str, *, database: str = "postgres") -> str:
        return run([*self.tool(acc, "psql"), "-d", database, "-X", "-q", "-A", "-t",
                    "-v", "ON_ERROR_STOP=1"], stdin=sql, what=acc.label)

    def init(self, acc: Accessory, password: Secret) -> None:
        self._own(acc.base, acc.base / "run", acc.data)
        if not (acc.data / "PG_VERSION").exists():
            run(self.owner([self.bin("initdb", acc.spec.version), "-D", str(acc.data), "-U",
                            acc.user, "--auth-local=trust", "--auth-host=scram-sha-256",
                            "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions"], acc),
                what=f"{acc.label}: initdb")
            with open(acc.data / "postgresql.conf", "a") as conf:
                conf.write("\n# Headway: loopback TCP for the app; tools use a private socket\n"
                           "listen_addresses = '127.0.0.1'\n")
        self.start(acc, password)
        exists = self._sql(acc, "SELECT 1 FROM pg_database WHERE datname = "
                           f"'{acc.database}'").strip()
        if not exists:
            self._sql(acc, f"CREATE DATABASE {_ident(acc.database)} OWNER {_ident(acc.user)}")
        self._sql(acc, f"ALTER ROLE {_ident(acc.user)} PASSWORD "
                  f"'{scram_verifier(password.reveal())}'")

    def start(self, acc: Accessory, password: Secret, *, persist: bool = True) -> None:
        self._own(acc.base / "run", acc.sockets)
        ssl = " -c ssl=on" if self._certificate(acc) else ""
        run(self.owner([self.bin("pg_ctl", acc.spec.version), "-D", str(acc.data), "-l",
                        str(acc.log), "-o", f"-p {acc.port} -k {acc.sockets}{ssl}", "-w", "-t",
                        "60", "start"], acc), what=f"{acc.label}: start", log=acc.log)

    def _certificate(self, acc: Accessory) -> bool:
        """A self-signed certificate in the data folder, made once, so an app that insists on
        SSL (Heroku-style `ssl: { rejectUnauthorized: false }`, `sslmode=require`) connects as
        it would to a managed database; plain connections work as before. False (no SSL)
        where openssl is missing."""
        if (acc.data / "server.crt").exists():
            return True
        if not shutil.which("openssl"):
            return False
        run(self.owner(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                        "3650", "-subj", "/CN=127.0.0.1", "-keyout", str(acc.data / "server.key"),
                        "-out", str(acc.data / "server.crt")], acc),
            what=f"{acc.label}: its certificate")
        (acc.data / "server.key").chmod(0o600)  # PostgreSQL refuses a key others may read
        return True

    def stop(self, acc: Accessory, password: Secret) -> None:
        if self.pid(acc):
            run(self.owner([self.bin("pg_ctl", acc.spec.version), "-D", str(acc.data),
                            "-m", "fast", "-w", "-t", "60", "stop"], acc), what=f"{acc.label}: stop")

    def pid(self, acc: Accessory) -> int | None:
        return read_pid(acc.data / "postmaster.pid")

    def healthy(self, acc: Accessory, password: Secret) -> bool:
        try:
            run([*self.tool(acc, "pg_isready"), "-d", acc.database], what=acc.label, timeout=5)
        except RuntimeFailure:
            return False
        return True

    def url(self, acc: Accessory, password: Secret) -> str:
        return (f"{acc.spec.scheme or 'postgresql'}://{acc.user}:{password.reveal()}@127.0.0.1:"
                f"{acc.port}/{acc.database}")

    def dump_argv(self, acc: Accessory, password: Secret) -> tuple[list[str], dict[str, str]]:
        return [*self.tool(acc, "pg_dump"), "-Fc", "-d", acc.database], {}

    def shell_argv(self, acc: Accessory, password: Secret,
                   args: list[str]) -> tuple[list[str], dict[str, str]]:
        return [*self.tool(acc, "psql"), "-d", acc.database, *args], {}

    def restore(self, acc: Accessory, password: Secret, dump: Path, *,
                into: str | None) -> str:
        """Into a new database `into`; else into a fresh database that then takes the live
        one's name, the live one kept, renamed, with connections refused."""
        target = into or f"{acc.database}_restoring"
        exists = self._sql(acc, f"SELECT 1 FROM pg_database WHERE datname = '{target}'").strip()
        if into and exists:
            raise ConfigError(f"--into {into}: that database already exists",
                              hint="name a new one, or restore over the live one without --into")
        if exists:
            self._sql(acc, f"DROP DATABASE {_ident(target)}")
        self._sql(acc, f"CREATE DATABASE {_ident(target)} OWNER {_ident(acc.user)}")
        try:
            run([*self.tool(acc, "pg_restore"), "--no-owner", "--exit-on-error", "-d", target,
                 str(dump)], what=f"{acc.label}: pg_restore", timeout=6 * 3600)
        except RuntimeFailure:
            self._sql(acc, f"DROP DATABASE IF EXISTS {_ident(target)}")
            raise
        if into:
            return f"restored into the new database {into}; the live one is unchanged"
        kept = f"{acc.database}_before_restore_{time.strftime('%Y%m%d%H%M%S')}"
        live = _ident(acc.database)
        self._sql(acc, f"ALTER DATABASE {live} ALLOW_CONNECTIONS false;\n"
                  "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                  f"WHERE datname = '{acc.database}' AND pid <> pg_backend_pid();\n"
                  f"ALTER DATABASE {live} RENAME TO {_ident(kept)};\n"
                  f"ALTER DATABASE {_ident(target)} RENAME TO {live};")
        return (f"database {acc.database} restored; the one it replaced is kept as {kept} "
                f"(drop it with: headway accessory psql {acc.name} -- -c 'DROP DATABASE {kept}')")

    def check(self, dump: Path, scratch: Path) -> dict[str, int]:
        """Restore into a throwaway server in `scratch`; rows per table."""
        acc = Accessory("verify", "verify", "verify", AccessorySpec(type="postgres"), 5432,
                        scratch)
        self._own(acc.base, acc.base / "run", acc.sockets)
        run(self.owner([self.bin("initdb"), "-D", str(acc.data), "-U", "verify", "--auth=trust",
                        "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions"], acc),
            what="verify: initdb")
        run(self.owner([self.bin("pg_ctl"), "-D", str(acc.data), "-l", str(acc.log), "-o",
                        f"-p 5432 -c listen_addresses='' -k {acc.sockets} -F", "-w",
                        "start"], acc), what="verify: start a scratch server")
        try:
            self._sql(acc, "CREATE DATABASE verify")
            run([*self.tool(acc, "pg_restore"), "--no-owner", "--exit-on-error", "-d",
                 "verify", str(dump)], what="verify: pg_restore", timeout=6 * 3600)
            out = self._sql(acc, "SELECT format('%I.%I', table_schema, table_name), "
                            "(xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c "
                            "FROM %I.%I', table_schema, table_name), false, true, '')))[1]"
                            "::text FROM information_schema.tables WHERE table_type = "
                            "'BASE TABLE' AND table_schema NOT IN ('pg_catalog', "
                            "'information_schema') ORDER BY 1", database="verify")
        finally:
            run(self.owner([self.bin("pg_ctl"), "-D", str(acc.data), "-m", "immediate",
                            "stop"], acc), what="verify: stop the scratch server")
            shutil.rmtree(acc.sockets, ignore_errors=True)
        return {t: int(n) for t, n in (line.split("|") for line in out.splitlines() if line)}


# Redis ----------------------------------------------------------------------------------------
class Redis:
    def version(self, acc: Accessory) -> str:
        out = run(["redis-server", "--version"], what=acc.label)
        found = re.search(r"v=(\d+)", out)
        major = found.group(1) if found else "?"
        if acc.spec.version and acc.spec.version.split(".")[0] != major:
            raise ConfigError(f"accessories.{acc.name}.version: Redis {acc.spec.version} is not "
                              f"installed here (installed: {major})")
        return major

    def _config(self, acc: Accessory, password: Secret, *, persist: bool) -> str:
        run_dir = acc.base / "run"
        return "\n".join([
            "bind 127.0.0.1", f"port {acc.port}", "protected-mode yes", "daemonize yes",
            f"pidfile {run_dir / 'redis.pid'}", f"logfile {acc.log}", f"dir {acc.data}",
            f"appendonly {'yes' if persist else 'no'}", "save 3600 1 300 100 60 10000",
            "repl-diskless-sync-delay 0",
            f"requirepass {password.reveal()}", ""])

    def init(self, acc: Accessory, password: Secret) -> None:
        self.version(acc)
        self.start(acc, password)

    def start(self, acc: Accessory, password: Secret, *, persist: bool = True) -> None:
        for path in (acc.base, acc.base / "run", acc.data):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        run(["redis-server", "-"], stdin=self._config(acc, password, persist=persist),
            what=f"{acc.label}: start")
        wait_for(lambda: self.healthy(acc, password), what=acc.label)

    def _cli(self, acc: Accessory, password: Secret, *args: str) -> str:
        return run(["redis-cli", "-p", str(acc.port), *args], what=acc.label,
                   env={"REDISCLI_AUTH": password.reveal()})

    def healthy(self, acc: Accessory, password: Secret) -> bool:
        try:
            return self._cli(acc, password, "PING").strip() == "PONG"
        except RuntimeFailure:
            return False

    def stop(self, acc: Accessory, password: Secret) -> None:
        pid = self.pid(acc)
        if pid:
            self._cli(acc, password, "SHUTDOWN")
            wait_for(lambda: not pid_alive(pid), what=f"{acc.label}: stop")

    def pid(self, acc: Accessory) -> int | None:
        return read_pid(acc.base / "run" / "redis.pid")

    def url(self, acc: Accessory, password: Secret) -> str:
        return f"redis://:{password.reveal()}@127.0.0.1:{acc.port}/0"

    def dump_argv(self, acc: Accessory, password: Secret) -> tuple[list[str], dict[str, str]]:
        return (["redis-cli", "-p", str(acc.port), "--rdb", "-"],
                {"REDISCLI_AUTH": password.reveal()})

    def shell_argv(self, acc: Accessory, password: Secret,
                   args: list[str]) -> tuple[list[str], dict[str, str]]:
        return ["redis-cli", "-p", str(acc.port), *args], {"REDISCLI_AUTH": password.reveal()}

    def restore(self, acc: Accessory, password: Secret, dump: Path, *,
                into: str | None) -> str:
        """Stop, set the data folder aside, start from the snapshot, then rebuild the
        append-only file from it (Redis's documented way to load an RDB when AOF is on)."""
        if into:
            raise ConfigError("--into is for postgres accessories; a Redis restore replaces "
                              "the data (the old data folder is kept)")
        self.stop(acc, password)
        kept = acc.data.with_name(f"{acc.data.name}.before-restore-{time.strftime('%Y%m%d%H%M%S')}")
        acc.data.rename(kept)
        acc.data.mkdir(mode=0o700)
        shutil.copyfile(dump, acc.data / "dump.rdb")
        self.start(acc, password, persist=False)
        self._cli(acc, password, "CONFIG", "SET", "appendonly", "yes")
        wait_for(lambda: "aof_rewrite_in_progress:0" in (info := self._cli(
            acc, password, "INFO", "persistence")) and "aof_rewrite_scheduled:0" in info,
            what=f"{acc.label}: rewrite the append-only file", timeout=600)
        return f"{acc.name} restored; the data it replaced is kept in {kept}"

    def check(self, dump: Path, scratch: Path) -> dict[str, int]:
        """Load the snapshot in a throwaway server on a unix socket; keys per database."""
        scratch.mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.copyfile(dump, scratch / "dump.rdb")
        sock = scratch / "redis.sock"
        config = (f"port 0\nunixsocket {sock}\ndir {scratch}\nappendonly no\nsave \"\"\n"
                  f"daemonize yes\npidfile {scratch / 'redis.pid'}\n"
                  f"logfile {scratch / 'server.log'}\n")
        run(["redis-server", "-"], stdin=config, what="verify: start a scratch server")
        try:
            wait_for(lambda: sock.exists() and _answers(sock), what="verify: scratch Redis",
                     timeout=600)
            info = run(["redis-cli", "-s", str(sock), "INFO", "keyspace"], what="verify")
        finally:
            run(["redis-cli", "-s", str(sock), "SHUTDOWN", "NOSAVE"], what="verify: stop")
        return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(db\d+):keys=(\d+)", info,
                                                                   re.MULTILINE)}


def _answers(sock: Path) -> bool:
    try:
        return run(["redis-cli", "-s", str(sock), "PING"], what="verify").strip() == "PONG"
    except RuntimeFailure:
        return False


DRIVERS: dict[str, Driver] = {"postgres": Postgres(), "redis": Redis()}
