"""`headway doctor` (is this host's Headway healthy: the store, its copies, permissions, the
agent, HAProxy, ports, disk) and `headway agent [install]` (run the agent; write the systemd
unit that brings it, and so every app, back after a reboot). Doctor only reads: it never
repairs, restores or restarts anything; it says what to run."""

from __future__ import annotations

import getpass
import hashlib
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import click

from headway.cli import output

LOW_DISK = 100 * 1024 * 1024  # bytes free under $HEADWAY_HOME below which doctor warns


def _row(check: str, ok: bool | None, detail: str) -> dict[str, Any]:
    return {"check": check, "status": "ok" if ok else "warn" if ok is None else "FAIL",
            "detail": detail}


def check_store(home: Path) -> tuple[list[dict[str, Any]], bool]:
    """The store opens and passes PRAGMA integrity_check; whether it is usable."""
    db = home / "state.db"
    if not db.exists():
        return [_row("store", None, f"{db} does not exist yet (nothing deployed)")], False
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
            result = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
    except sqlite3.Error as exc:
        return [_row("store", False, f"{db}: {exc}")], False
    if result == ["ok"]:
        return [_row("store", True, f"{db}: integrity check ok")], True
    return [_row("store", False, f"{db}: " + "; ".join(result[:3]))], False


def check_copies(home: Path, store_ok: bool) -> list[dict[str, Any]]:
    from headway.store import snapshots

    copies = snapshots.listing(home)
    if not copies:
        return [_row("store copies", None, f"none yet in {snapshots.folder(home)} (one is "
                     "taken before each deploy and every hour)")]
    age = time.time() - copies[0].stat().st_mtime
    rows = [_row("store copies", True, f"{len(copies)} in {snapshots.folder(home)}, newest "
                 f"{copies[0].name} ({age / 60:.0f} min old)")]
    if not store_ok:
        steps = snapshots.restore_steps(home, copies[0])
        rows.append(_row("to restore", None, " ; ".join(f"{n}. {s}" for n, s in
                                                        enumerate(steps, 1))))
    return rows


def check_permissions(home: Path) -> list[dict[str, Any]]:
    rows = []
    for path, want in ((home, 0o700), (home / "state.db", 0o600), (home / "master.key", 0o600)):
        if not path.exists():
            continue
        info = path.stat()
        mode = stat.S_IMODE(info.st_mode)
        problems = []
        if mode & ~want:
            problems.append(f"mode {mode:o} (want {want:o}: chmod {want:o} {path})")
        if info.st_uid != os.getuid():
            problems.append(f"owned by uid {info.st_uid}, not {os.getuid()}")
        usable = os.access(path, os.R_OK | os.W_OK)
        if not usable:
            problems.append("not readable and writable by this user")
        status = False if not usable else None if problems else True
        rows.append(_row(f"permissions {path.name}", status,
                         "; ".join(problems) or f"mode {mode:o}"))
    return rows


def check_agent(home: Path, has_apps: bool) -> list[dict[str, Any]]:
    from headway.agent.control import agent_running
    from headway.agent.main import health

    if not agent_running(home):
        return [_row("agent", not has_apps and None,
                     "not running" + (": run any headway command, e.g. `headway status`, to "
                                      "start it" if has_apps else " (no app deployed)"))]
    pid = (home / "agent.pid").read_text().strip() if (home / "agent.pid").exists() else "?"
    trouble = health(home)
    if trouble:
        return [_row("agent", False, f"running (pid {pid}) but retrying: " + "; ".join(
            f"{what}: {e['error']}" for what, e in trouble.items()))]
    return [_row("agent", True, f"running (pid {pid})")]


def check_router(home: Path, apps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from headway.router import HAProxy

    apps = [a for a in apps if a["router_port"]]  # 0: a fleet host without web: no router
    if not apps:
        return []
    rows = [_row("haproxy", HAProxy(home).running(),
                 "running" if HAProxy(home).running() else
                 "not running (the agent starts it again within a second when it runs)")]
    for app in apps:
        address = "127.0.0.1" if app["router_address"] in {"0.0.0.0", "::", ""} \
            else app["router_address"]
        listening = _listening(address, app["router_port"])
        rows.append(_row(f"port {app['router_port']}", listening,
                         f"{app['app']} ({app['env']}) "
                         + ("answers" if listening else "nothing listens")))
    return rows


def check_ports(home: Path, observe: dict[str, Any]) -> list[dict[str, Any]]:
    from headway.store import ports

    rows = []
    for key in ("metrics_port", "router_metrics_port"):
        port = observe.get(key)
        if not port:
            continue
        other = ports.holder(int(port), home)
        rows.append(_row(f"{key} {port}", other is None,
                         f"served by the agent of {other}" if other else "not taken by another "
                         "home"))
    return rows


def check_disk(home: Path) -> list[dict[str, Any]]:
    if not home.exists():
        return []
    free = shutil.disk_usage(home).free
    return [_row("disk", free >= LOW_DISK, f"{free / 2**20:.0f} MiB free under {home}")]


def _listening(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


def _read_apps(home: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    import json

    try:
        with closing(sqlite3.connect(f"file:{home / 'state.db'}?mode=ro", uri=True,
                                     timeout=5)) as conn:
            conn.row_factory = sqlite3.Row
            apps = [dict(r) for r in conn.execute("SELECT * FROM apps")]
            row = conn.execute("SELECT value FROM kv WHERE key='observe'").fetchone()
    except sqlite3.Error:
        return [], {}
    return apps, json.loads(row[0]) if row else {}


def diagnose(home: Path) -> list[dict[str, Any]]:
    """Every check, in order: store, copies, permissions, disk, agent, HAProxy, ports."""
    rows, store_ok = check_store(home)
    apps, observe = _read_apps(home) if store_ok else ([], {})
    rows += check_copies(home, store_ok) + check_permissions(home) + check_disk(home)
    rows += check_agent(home, bool(apps)) + check_router(home, apps) + check_ports(home, observe)
    return rows


@click.command()
@output.json_option
def doctor(as_json: bool) -> None:
    """Check this host's Headway: the store, its copies, permissions, agent, HAProxy, ports."""
    from headway.store import home_dir

    rows = diagnose(home_dir())
    output.table(rows, as_json, ["check", "status", "detail"])
    if any(r["status"] == "FAIL" for r in rows):
        sys.exit(1)


# the agent -----------------------------------------------------------------------------------
@click.group(invoke_without_command=True)
@click.pass_context
def agent(click_ctx: click.Context) -> None:
    """Run the host agent in the foreground (the CLI starts it when needed)."""
    if click_ctx.invoked_subcommand is None:
        from headway.agent.main import run_agent
        from headway.store import home_dir

        run_agent(home_dir(), log=output.agent_log)


def unit_name(home: Path) -> str:
    return f"headway-agent-{hashlib.sha256(str(home).encode()).hexdigest()[:8]}.service"


def render_unit(home: Path, *, user: str | None, environment: dict[str, str]) -> str:
    """The systemd unit that runs this home's agent at boot and after a crash."""
    env_lines = "".join('Environment="{}"\n'.format(f"{k}={v}".replace("\\", "\\\\")
                                                    .replace('"', '\\"'))
                        for k, v in sorted(environment.items()) if "\n" not in v)
    return (
        "[Unit]\n"
        f"Description=Headway agent for {home}\n"
        "After=network-online.target\nWants=network-online.target\n\n"
        "[Service]\nType=simple\n"
        + (f"User={user}\n" if user else "")
        + env_lines
        + f"ExecStart={sys.executable} -m headway agent\n"
        "Restart=on-failure\nRestartSec=2\n"
        "# instances and HAProxy run in sessions of their own and outlive an agent restart\n"
        "KillMode=process\n\n"
        "[Install]\n"
        + ("WantedBy=multi-user.target\n" if user else "WantedBy=default.target\n"))


@agent.command()
@click.option("--path", "unit_path", type=click.Path(path_type=Path), default=None,
              help="where to write the unit (default: /etc/systemd/system as root, else "
                   "~/.config/systemd/user)")
def install(unit_path: Path | None) -> None:
    """Write a systemd unit for this home's agent (and enable it when systemd runs)."""
    from headway.agent.control import agent_environment
    from headway.store import home_dir

    home, root = home_dir(), os.geteuid() == 0
    folder = Path("/etc/systemd/system") if root else \
        Path.home() / ".config" / "systemd" / "user"
    target = unit_path or folder / unit_name(home)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_unit(home, user=getpass.getuser() if root else None,
                                  environment=agent_environment(home)))
    click.echo(f"wrote {target}")
    name = target.name
    user_flag = [] if root else ["--user"]
    if unit_path is None and Path("/run/systemd/system").is_dir():
        for argv in (["systemctl", *user_flag, "daemon-reload"],
                     ["systemctl", *user_flag, "enable", "--now", name]):
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise click.ClickException(f"{' '.join(argv)}: {done.stderr.strip()}")
        click.echo(f"enabled and started {name}: the agent (and every app) comes back after a "
                   "reboot")
    else:
        click.echo("systemd is not running on this host: nothing was enabled. Where it runs: "
                   f"systemctl {' '.join(user_flag + ['enable', '--now', name])}")
