"""`headway accessory` and `headway backup`: the app's PostgreSQL and Redis servers, and the
backups of those and of its [volumes]. Restores only ever happen here, on an explicit
command."""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from dataclasses import asdict
from typing import Any

import click

from headway.cli import kube_runtime, output

pass_ctx = click.make_pass_decorator(output.Context, ensure=True)


def _accessories(ctx: output.Context, name: str | None) -> list[Any]:
    from headway.accessories import manage

    return manage.load(ctx.store(), ctx.app(), ctx.env, name)


def _one(ctx: output.Context, name: str | None, kind: str | None = None) -> Any:
    from headway.errors import ConfigError

    found = [a for a in _accessories(ctx, name) if kind in {None, a.spec.type}]
    if len(found) != 1:
        names = ", ".join(a.name for a in found) or "none"
        raise ConfigError(f"name the accessory ({kind or 'any type'}); this app has: {names}")
    return found[0]


@click.group()
@pass_ctx
def accessory(ctx: output.Context) -> None:
    """The app's PostgreSQL and Redis servers (created by `headway deploy`)."""
    kube_runtime.refuse_data(ctx, "accessory")  # runtime = "kubernetes": not built


@accessory.command("status")
@output.json_option
@pass_ctx
def status(ctx: output.Context, as_json: bool) -> None:
    """Each accessory: running or not, address, data folder and size."""
    from headway.accessories import manage

    spec = ctx.spec() if ctx.config.exists() else None
    rows = manage.status(ctx.store(), ctx.app(), ctx.env, spec)
    output.table(rows, as_json, ["name", "type", "state", "pid", "address", "url_env",
                                 "data_mb", "data"])


@accessory.command("logs")
@click.argument("name", required=False)
@click.option("-n", "--lines", default=50, show_default=True)
@click.option("-f", "--follow", is_flag=True)
@pass_ctx
def logs(ctx: output.Context, name: str | None, lines: int, follow: bool) -> None:
    """The server's own log."""
    log = _one(ctx, name).log
    if not log.exists():
        return
    with open(log, errors="replace") as f:
        sys.stdout.writelines(deque(f, maxlen=lines))
        while follow:
            sys.stdout.flush()
            time.sleep(0.3)
            sys.stdout.writelines(f.readlines())


@accessory.command("restart")
@click.argument("name", required=False)
@pass_ctx
def restart(ctx: output.Context, name: str | None) -> None:
    """Stop and start it (the app's connections are cut)."""
    from headway.accessories import manage

    acc = _one(ctx, name)
    manage.restart(ctx.store(), acc)
    click.echo(f"{acc.name} restarted")


def _shell(ctx: output.Context, name: str | None, kind: str, args: tuple[str, ...]) -> None:
    from headway.accessories import manage
    from headway.accessories.servers import DRIVERS

    acc = _one(ctx, name, kind)
    argv, env = DRIVERS[kind].shell_argv(acc, manage.password(ctx.store(), acc), list(args))
    os.execvpe(argv[0], argv, os.environ | env)


@accessory.command("psql", context_settings={"ignore_unknown_options": True})
@click.argument("name", required=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@pass_ctx
def psql(ctx: output.Context, name: str | None, args: tuple[str, ...]) -> None:
    """psql into the database; ARGS after -- go to psql."""
    _shell(ctx, name, "postgres", args)


@accessory.command("redis-cli", context_settings={"ignore_unknown_options": True})
@click.argument("name", required=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@pass_ctx
def redis_cli(ctx: output.Context, name: str | None, args: tuple[str, ...]) -> None:
    """redis-cli to the server (the password goes by environment, not argv)."""
    _shell(ctx, name, "redis", args)


@click.group()
@pass_ctx
def backup(ctx: output.Context) -> None:
    """Backups of the accessories and volumes: create, list, restore, verify, prune."""
    kube_runtime.refuse_data(ctx, "backup")  # runtime = "kubernetes": not built


_COLUMNS = ["id", "accessory", "type", "created", "size", "release", "reason", "verified",
            "sha256"]


def _row(b: Any) -> dict[str, Any]:
    return asdict(b) | {"sha256": b.sha256[:12] if b.sha256 else None}


@backup.command("create")
@click.argument("name", required=False)
@output.json_option
@pass_ctx
def create(ctx: output.Context, name: str | None, as_json: bool) -> None:
    """Back up NAME, an accessory or a volume (default: every accessory and volume)."""
    from headway.accessories import backups

    made = backups.create_all(ctx.store(), ctx.app(), ctx.env, name, reason="manual")
    output.table([_row(b) for b in made], as_json, _COLUMNS[:-2] + ["path"])


@backup.command("list")
@click.argument("name", required=False)
@output.json_option
@pass_ctx
def list_(ctx: output.Context, name: str | None, as_json: bool) -> None:
    """Backups, newest first."""
    from headway.accessories import backups

    rows = [_row(b) for b in backups.listing(ctx.store(), ctx.app(), ctx.env, name)]
    output.table(rows, as_json, _COLUMNS)


@backup.command("restore")
@click.argument("name")
@click.argument("backup_id", required=False)
@click.option("--into", default=None, help="postgres: restore into this new database instead; "
              "a volume: extract into this new folder")
@click.option("--yes", is_flag=True, help="do not ask")
@pass_ctx
def restore(ctx: output.Context, name: str, backup_id: str | None, into: str | None,
            yes: bool) -> None:
    """Put BACKUP_ID (default: the newest) back into NAME. What it replaces is kept."""
    from headway.accessories import backups

    store = ctx.store()
    b = backups.find(store, ctx.app(), ctx.env, name, backup_id)
    volume = b.type == backups.VOLUME
    if not yes and not into and sys.stdin.isatty():
        click.confirm(f"Replace the files of volume {name} ({ctx.env}) with backup {b.id}? "
                      "The replaced folder is kept beside it."
                      if volume else f"Replace the data of {name} ({ctx.env}) with backup "
                      f"{b.id}? The app's connections to it are cut.", abort=True)
    click.echo(backups.restore(store, b, into=into))
    if volume and not into:
        _running_note(ctx, name)


def _running_note(ctx: output.Context, name: str) -> None:
    """What instances that ran through a volume restore see (the swap is a rename)."""
    from headway.runtime.base import instance_kind

    kinds = {instance_kind(i) for i in ctx.store().instances(ctx.app(), ctx.env)
             if i.desired == "running"}
    if kinds - {"process"}:
        click.echo(f"warning: running containers keep the replaced folder of {name} mounted "
                   "until they are replaced: `headway deploy --force` starts new ones",
                   err=True)
    if "process" in kinds:
        click.echo(f"note: running processes open {name}'s restored files from now on; a file "
                   "one holds open (a SQLite database) stays the replaced one until it "
                   "restarts (`headway deploy --force`)", err=True)


@backup.command("verify")
@click.argument("name")
@click.argument("backup_id", required=False)
@output.json_option
@pass_ctx
def verify(ctx: output.Context, name: str, backup_id: str | None, as_json: bool) -> None:
    """Check the checksum, restore into a scratch server, count what it holds."""
    from headway.accessories import backups

    store = ctx.store()
    b = backups.verify(store, backups.find(store, ctx.app(), ctx.env, name, backup_id))
    if as_json:
        output.table([_row(b)], True, [])
        return
    click.echo(f"{b.id}: checksum ok, " + ("every member extracts inside the volume"
                                             if b.type == backups.VOLUME else
                                             f"restored into a scratch {b.type} server"))
    for group in b.details.values():
        for key, count in group.items():
            click.echo(f"  {key}: {count}")


@backup.command("prune")
@click.argument("name", required=False)
@pass_ctx
def prune(ctx: output.Context, name: str | None) -> None:
    """Delete backups the retention policy ([backups] keep_*) does not keep."""
    from headway.accessories import backups

    gone = backups.prune(ctx.store(), ctx.app(), ctx.env, name)
    click.echo(f"deleted by the retention policy: {len(gone)}"
               + "".join(f"\n  {b.id}" for b in gone))
