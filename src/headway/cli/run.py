"""`headway run` and `headway exec`: a one-off command in a new short-lived instance of a
release, or inside a running instance, on the user's terminal (a TTY when stdin is one); the
command's exit code becomes headway's. Prints nothing of its own, and never a secret."""

from __future__ import annotations

import sys

import click

from headway.cli import output
from headway.cli.servers import fleet_one_off, host_option
from headway.errors import ConfigError

pass_ctx = click.make_pass_decorator(output.Context, ensure=True)
RAW = {"ignore_unknown_options": True, "allow_interspersed_args": False}


class _Dashed(click.Command):
    """Remembers the arguments before and after the first `--` (Click does not tell them
    apart, and keeps a `--` that follows a positional argument)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        at = args.index("--") if "--" in args else None
        ctx.meta["dashes"] = None if at is None else (args[:at], args[at + 1:])
        return super().parse_args(ctx, args)


def _command(words: tuple[str, ...] | list[str], usage: str) -> list[str]:
    if not words:
        raise ConfigError("no command given", hint=f"e.g. {usage}")
    return list(words)


@click.command(cls=_Dashed, context_settings=RAW)
@click.option("--release", type=int, default=None,
              help="the release to run it in (default: the live one)")
@host_option
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="-- CMD [ARGS]...")
@pass_ctx
def run(ctx: output.Context, release: int | None, hosts: tuple[str, ...],
        command: tuple[str, ...]) -> None:
    """Run a one-off command in a new instance of the release: headway run -- CMD ARGS."""
    dashes = click.get_current_context().meta["dashes"]
    argv = _command(dashes[1] if dashes else command, "headway run -- python manage.py shell")
    chosen = ["--release", str(release)] if release is not None else []
    if fleet_one_off(ctx, ["run", *chosen, "--", *argv], hosts):  # [servers]: on one host
        return
    from headway.cli import kube_runtime  # runtime = "kubernetes": a Job, exits with its code
    kube_runtime.run(ctx, argv, release)
    code = ctx.engine().run(ctx.app(), ctx.env, argv, release=release,
                            tty=sys.stdin.isatty())
    sys.exit(code)


@click.command("exec", cls=_Dashed, context_settings=RAW)
@host_option
@click.argument("command", nargs=-1, type=click.UNPROCESSED,
                metavar="[INSTANCE] -- CMD [ARGS]...")
@pass_ctx
def exec_(ctx: output.Context, hosts: tuple[str, ...], command: tuple[str, ...]) -> None:
    """Run a command inside a running instance: headway exec [INSTANCE] -- CMD ARGS."""
    before, after = click.get_current_context().meta["dashes"] or ([], list(command))
    before = [w for w in before if w not in hosts and not w.startswith("--host")]
    if len(before) > 1:
        raise ConfigError(f"exec: {' '.join(before)}: one instance before --",
                          hint="headway exec web-r3-1a2b3c -- ls")
    instance = before[0] if before else None
    argv = _command(after, "headway exec -- ls -la")
    if fleet_one_off(ctx, ["exec", *before, "--", *argv], hosts):  # [servers]: on one host
        return
    code = ctx.engine().exec(ctx.app(), ctx.env, argv, instance=instance,
                             tty=sys.stdin.isatty())
    sys.exit(code)


def register(group: click.Group) -> None:
    group.add_command(run)
    group.add_command(exec_)
