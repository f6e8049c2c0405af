"""`headway dashboard token`: the token the web dashboard's actions (rollback, promote,
abort) require, made on first use and kept 0600 in $HEADWAY_HOME. Prints; the work is in
headway.dashboard.actions."""

from __future__ import annotations

import click

from headway.errors import ConfigError


@click.group()
def dashboard() -> None:
    """The web dashboard ([observe] dashboard = true): its actions' token."""


@dashboard.command()
@click.option("--rotate", is_flag=True, help="make a new token; the old one stops working")
def token(rotate: bool) -> None:
    """Print the dashboard token (made on first use). Paste it in the page's token field."""
    from headway.dashboard.actions import token as get_token
    from headway.store import home_dir

    try:
        click.echo(get_token(home_dir(), rotate=rotate))
    except OSError as exc:
        raise ConfigError(f"{home_dir()}: cannot keep the dashboard token there "
                          f"({exc.strerror})", hint="check that $HEADWAY_HOME is writable") from exc


def register(group: click.Group) -> None:
    group.add_command(dashboard)
