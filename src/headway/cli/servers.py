"""`headway servers check|setup|trust|converge`, and the fleet side of `deploy`, `rollback`,
`status`, `releases`, `logs` and `events` when headway.toml has [servers] (cli/main.py calls the fleet_*
functions; each returns False, changing nothing, when there is no [servers]). Prints; the
work is in headway.fleet."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from headway.errors import ConfigError

if TYPE_CHECKING:
    from headway.cli import output
    from headway.fleet.fleet import Fleet

ON_HOST = "HEADWAY_FLEET_HOST"  # set by the control machine for a host's own headway
host_option = click.option("--host", "hosts", multiple=True, metavar="HOST",
                           help="only this [servers] host (repeatable)")


def pass_ctx(command: Callable[..., None]) -> Callable[..., None]:
    from headway.cli.main import pass_ctx as main_pass_ctx

    return main_pass_ctx(command)


def _fleet(ctx: output.Context, spec: Any = None, hosts: tuple[str, ...] = ()) -> Fleet:
    from headway.cli import output
    from headway.fleet.fleet import Fleet

    spec = spec or ctx.spec()
    if not spec.servers_for(ctx.env):
        raise ConfigError(f"{ctx.config}: no [servers] (nor [env.{ctx.env}.servers]): headway "
                          f"deploys --env {ctx.env} to this machine",
                          hint='list the hosts: [servers] web = ["deploy@10.0.0.5"]')
    from headway.fleet.images import check
    from headway.store import home_dir

    check(spec, ctx.config)

    return Fleet.open(spec, ctx.config, ctx.env, home_dir(), only=hosts,
                      progress=output.progress)


def _has_servers(config: Path, env: str) -> bool:
    """[servers] or [env.ENV.servers] in headway.toml, read without the spec models (rollback
    stays fast)."""
    if os.environ.get(ON_HOST) or not config.is_file():
        return False
    try:
        data = tomllib.loads(config.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    table = data.get("env", {}).get(env)
    own = table.get("servers") if isinstance(table, dict) else None
    return bool(own if own is not None else data.get("servers"))


def _to_fleet(ctx: output.Context, hosts: tuple[str, ...]) -> bool:
    """Whether a command goes to the [servers] hosts (--host without them is refused)."""
    if _has_servers(ctx.config, ctx.env):
        return True
    if hosts:
        raise ConfigError("--host: no [servers] in headway.toml")
    return False


def _finish(fleet: Fleet, work: Callable[[], Any]) -> Any:
    try:
        return work()
    finally:
        fleet.close()


# hooks for cli/main.py ---------------------------------------------------------------------
def on_host(spec: Any) -> Any:
    """On a fleet host, the spec as the control machine says this host deploys it: only the
    processes of its [servers] roles, and no release command when the fleet's first host ran
    it already (fleet/deploy.py once); elsewhere the spec as it is."""
    from headway.fleet.remote import PROCESSES_VAR, RELEASE_VAR

    if not os.environ.get(ON_HOST):
        return spec
    if only := os.environ.get(PROCESSES_VAR):
        spec = spec.running_only(only.split(","))
    if os.environ.get(RELEASE_VAR) == "done":
        spec = spec.model_copy(update={"release": spec.release.model_copy(
            update={"command": None})})
    return spec


def fleet_deploy(ctx: output.Context, spec: Any, *, dry_run: bool, force: bool) -> bool:
    if not spec.servers_for(ctx.env) or os.environ.get(ON_HOST):
        return False
    from headway.cli import output
    from headway.fleet import deploy
    from headway.fleet.deploy import release_once, rollout_batches

    fleet = _fleet(ctx, spec)
    deploy.check_shared_data(spec, fleet.hosts, ctx.config)
    if dry_run:
        if spec.app.runtime in ("podman", "docker"):
            output.out.print(f"build the image here (unless the registry has it), push it to "
                             f"{spec.registry.server}; every host pulls it by digest")
        if release_once(spec) and len(fleet.hosts) > 1:
            output.out.print(f"the release command runs on {fleet.hosts[0].name} only, which "
                             "deploys alone first (the data is shared: no [accessories])")
        for n, batch in enumerate(rollout_batches(spec, fleet.hosts), 1):
            output.out.print(f"batch {n}: " + ", ".join(f"{h.name} ({', '.join(h.processes)})"
                                                       for h in batch) + ": ship the release archive, then `headway deploy` there")
        return True
    result = _finish(fleet, lambda: deploy.deploy(fleet, ctx.source(spec), force=force))
    _outcome(result)
    return True


def fleet_rollback(options: Any, release: int | None) -> bool:
    if not _has_servers(options.config, options.env):
        return False
    from headway.cli import output
    from headway.fleet import rollback

    output.use_log_format(options.log_format)
    ctx = output.Context(config=options.config, env=options.env, app_name=options.app_name)
    fleet = _fleet(ctx)
    _outcome(_finish(fleet, lambda: rollback.rollback(fleet, release)))
    return True


def fleet_status(ctx: output.Context, as_json: bool, hosts: tuple[str, ...]) -> bool:
    if not _to_fleet(ctx, hosts):
        return False
    from headway.cli import output
    from headway.fleet import converge

    fleet = _fleet(ctx, hosts=hosts)
    data = _finish(fleet, lambda: converge.status(fleet))
    if as_json:
        print(json.dumps(data, indent=2))
        return True
    rows = [{"host": h["host"], **i} for h in data["hosts"] for i in h.get("instances", [])]
    for h in data["hosts"]:
        output.out.print(f"{h['host']}: " + (f"[red]{h['error']}[/red]" if "error" in h else
                                            f"release {h['active_release']} live, router "
                                            f"{h['router']}"))
    output.table(rows, False, ["host", "id", "release", "process", "port", "state", "router",
                               "health", "traffic"])
    return True


def fleet_releases(ctx: output.Context, as_json: bool, hosts: tuple[str, ...]) -> bool:
    if not _to_fleet(ctx, hosts):
        return False
    from headway.cli import output
    from headway.fleet import converge

    fleet = _fleet(ctx, hosts=hosts)
    rows = _finish(fleet, lambda: converge.releases(fleet))
    output.table(rows, as_json, ["host", "number", "status", "created", "deployed", "artifact",
                                 "failure"])
    return True


def fleet_events(ctx: output.Context, limit: int, as_json: bool,
                 hosts: tuple[str, ...]) -> bool:
    if not _to_fleet(ctx, hosts):
        return False
    from headway.cli import output
    from headway.fleet import reads

    fleet = _fleet(ctx, hosts=hosts)
    rows = _finish(fleet, lambda: reads.events(fleet, limit))
    output.table(rows, as_json, ["host", "ts", "release", "kind", "message"])
    return True


def fleet_one_off(ctx: output.Context, args: list[str], hosts: tuple[str, ...]) -> bool:
    """`headway run|exec ...` on one host (--host, else the first web host), over ssh, on
    this terminal (a TTY when stdin is one); exits with the command's code."""
    if not _to_fleet(ctx, hosts):
        return False
    import sys

    fleet = _fleet(ctx, hosts=hosts)
    if len(hosts) > 1:
        raise ConfigError(f"--host: one host for a one-off command, not {len(hosts)}")
    sys.exit(_finish(fleet, lambda: fleet.interactive(fleet.hosts[0], args,
                                                      tty=sys.stdin.isatty())))


def fleet_signal(ctx: output.Context, what: str) -> bool:
    """`headway promote|abort` to the running deploy on every host of [servers]."""
    if not _to_fleet(ctx, ()):
        return False
    from headway.cli import output
    from headway.fleet import deploy

    fleet = _fleet(ctx)
    said = _finish(fleet, lambda: deploy.signal(fleet, what))
    output.table([{"host": h, "result": r} for h, r in said.items()], False, ["host", "result"])
    return True


def fleet_destroy(ctx: output.Context, yes: bool, volumes: bool) -> bool:
    """`headway destroy` on every host of [servers], after one confirmation here."""
    if not _to_fleet(ctx, ()):
        return False
    from headway.cli import output
    from headway.fleet import deploy

    fleet = _fleet(ctx)
    output.confirm_destroy(f"{ctx.app()} ({ctx.env}) on {len(fleet.hosts)} host(s)", yes=yes,
                           volumes=volumes)
    said = _finish(fleet, lambda: deploy.destroy(fleet, volumes=volumes))
    output.table([{"host": h, "result": r} for h, r in said.items()], False, ["host", "result"])
    return True


def fleet_logs(ctx: output.Context, hosts: tuple[str, ...], as_json: bool,
               **options: Any) -> bool:
    """`headway logs` on every host (or --host), each line with its host."""
    if not _to_fleet(ctx, hosts):
        return False
    from headway.fleet import reads

    def emit(row: dict[str, Any]) -> None:
        if as_json:
            print(json.dumps(row), flush=True)
        else:
            print(f"{row['host']} | {row.get('instance', '-')} | {row.get('line', '')}",
                  flush=True)
    fleet = _fleet(ctx, hosts=hosts)
    failed = _finish(fleet, lambda: reads.logs(fleet, reads.log_args(**options), emit))
    if failed:
        name, exc = next(iter(failed.items()))
        others = f" (and {len(failed) - 1} more host(s))" if len(failed) > 1 else ""
        exc.message = f"{exc.message}{others}" if exc.message.startswith(name) \
            else f"{name}: {exc.message}{others}"
        raise exc
    return True


def _outcome(result: Any) -> None:
    from headway.cli import output

    took = f" in {result.seconds:.1f}s" if result.changed else ""
    output.out.print(f"[bold]{result.app}[/bold] ({result.env}): {result.message}{took}")
    for name, number in result.releases.items():
        output.out.print(f"  {name}: release {number}")
    for note in result.notes:
        output.out.print(f"  {note}")


# headway servers ...
@click.group()
def servers() -> None:
    """The hosts in [servers]: check them, set them up, trust their keys, converge them."""


@servers.command()
@host_option
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@pass_ctx
def check(ctx: output.Context, hosts: tuple[str, ...], as_json: bool) -> None:
    """Per host: reachable, OS, Python, HAProxy, podman, Headway. Changes nothing."""
    from headway.cli import output
    from headway.fleet import bootstrap

    fleet = _fleet(ctx, hosts=hosts)
    rows = _finish(fleet, lambda: bootstrap.check(fleet))
    output.table(rows, as_json, ["host", "reachable", "os", "python", "haproxy", "podman",
                                 "headway", "privilege", "ready", "missing"])
    if not_ready := [r for r in rows if not r["ready"]]:
        first = not_ready[0]
        raise ConfigError(f"{len(not_ready)} of {len(rows)} host(s) not ready; {first['host']}: "
                          f"{first['missing']}", hint=first.get("hint") or "`headway servers "
                          "setup` installs Headway (and with --install-packages what it needs)")


@servers.command()
@host_option
@click.option("--install-packages", is_flag=True,
              help="apt-get install what a host lacks (haproxy, python3-venv; podman for "
              "runtime = podman): root or sudo")
@pass_ctx
def setup(ctx: output.Context, hosts: tuple[str, ...], install_packages: bool) -> None:
    """Install this very Headway on each host, in its own virtualenv."""
    from headway.cli import output
    from headway.fleet import bootstrap

    fleet = _fleet(ctx, hosts=hosts)
    rows = _finish(fleet, lambda: bootstrap.setup(fleet, install_packages=install_packages))
    output.table(rows, False, ["host", "packages", "headway", "error"])
    _raise_failed(rows, "set up")


@servers.command()
@host_option
@pass_ctx
def trust(ctx: output.Context, hosts: tuple[str, ...]) -> None:
    """Record each host's SSH key in Headway's known_hosts (check the fingerprints shown)."""
    from headway.cli import output
    from headway.fleet import bootstrap

    fleet = _fleet(ctx, hosts=hosts)
    rows = _finish(fleet, lambda: bootstrap.trust(fleet))
    output.table(rows, False, ["host", "trusted", "keys", "error"])
    output.out.print(f"known hosts: {fleet.conn.known_hosts}")
    _raise_failed(rows, "trusted")


@servers.command()
@click.option("--force", is_flag=True, help="deploy the fleet's release on every host again")
@pass_ctx
def converge(ctx: output.Context, force: bool) -> None:
    """Bring every host that answers to the fleet's release (a host that was away)."""
    from headway.fleet import converge as work

    fleet = _fleet(ctx)
    _outcome(_finish(fleet, lambda: work.converge(fleet, force=force)))


def _raise_failed(rows: list[dict[str, Any]], what: str) -> None:
    failed = [r for r in rows if r.get("error")]
    if failed:
        raise ConfigError(f"{len(failed)} of {len(rows)} host(s) not {what}; "
                          f"{failed[0]['error']}", hint=failed[0].get("hint"))


def register(group: click.Group) -> None:
    group.add_command(servers)


__all__ = ["fleet_deploy", "fleet_events", "fleet_logs", "fleet_releases", "fleet_rollback",
           "fleet_status", "host_option", "register", "servers"]
