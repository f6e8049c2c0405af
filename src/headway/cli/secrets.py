"""`headway secrets`: values are read from stdin or a prompt, never from argv, and only
`export` ever prints one."""

from __future__ import annotations

import getpass
import json
import os
import sys
from typing import TYPE_CHECKING

import click

from headway.cli import output
from headway.errors import ConfigError

if TYPE_CHECKING:
    from headway.secrets import Vault

pass_ctx = click.make_pass_decorator(output.Context, ensure=True)


def _vault(ctx: output.Context) -> tuple[Vault, str, str]:
    from headway.secrets import Vault, load_key

    app = ctx.app()  # first: a bad --app or headway.toml is refused before the store is made
    store = ctx.store()
    return Vault(store, load_key(store.home)), app, ctx.env


@click.group()
def secrets() -> None:
    """Encrypted secrets of the app and environment, injected into its instances."""


@secrets.command("set")
@click.argument("name")
@pass_ctx
def set_(ctx: output.Context, name: str) -> None:
    """Set NAME from stdin (or a prompt). The next deploy makes a new release with it."""
    from headway.secrets import Secret

    if sys.stdin.isatty():
        value = getpass.getpass(f"{name}: ")
    else:
        value = sys.stdin.read().removesuffix("\n")
    if not value:
        raise ConfigError(f"secret {name}: empty value", hint=f"echo -n VALUE | headway secrets "
                          f"set {name}, or type it at the prompt")
    vault, app, env = _vault(ctx)
    version = vault.set(app, env, name, Secret(value))
    click.echo(f"{name} set for {app} ({env}), secrets version {version}; "
               "`headway deploy` to use it")


@secrets.command("list")
@output.json_option
@pass_ctx
def list_(ctx: output.Context, as_json: bool) -> None:
    """Names only."""
    vault, app, env = _vault(ctx)
    names = vault.names(app, env)
    if as_json:
        print(json.dumps(names))
    else:
        click.echo("\n".join(names) or f"no secrets for {app} ({env})")


@secrets.command()
@click.argument("name")
@pass_ctx
def unset(ctx: output.Context, name: str) -> None:
    """Remove NAME (from the next release on)."""
    vault, app, env = _vault(ctx)
    vault.unset(app, env, name)
    click.echo(f"{name} unset for {app} ({env})")


@secrets.command()
@pass_ctx
def export(ctx: output.Context) -> None:
    """Print NAME=value lines: the only command that shows values."""
    vault, app, env = _vault(ctx)
    for name, value in vault.values(app, env).items():
        click.echo(f"{name}={value.reveal()}")


@secrets.command("rotate-key")
@pass_ctx
def rotate_key(ctx: output.Context) -> None:
    """Re-encrypt every secret on this host under a new master key."""
    from headway.secrets.vault import KEY_ENV, rotate_key

    if os.environ.get(KEY_ENV):
        raise ConfigError(f"{KEY_ENV} is set: the key lives outside Headway",
                          hint=f"unset {KEY_ENV} to use (and rotate) the key file instead")
    count = rotate_key(ctx.store())
    click.echo(f"{count} secret versions re-encrypted under a new key")
