"""`headway tls status` (each HTTPS certificate on this host: names, issuer, expiry, state) and
`headway tls renew [--force]` (the app's certificate now, when due or forced). Prints; the
work is in headway.tls.manage."""

from __future__ import annotations

from typing import Any

import click

from headway.cli.main import json_option, pass_ctx


@click.group()
def tls() -> None:
    """HTTPS certificates ([router] tls): status and renewal."""


@tls.command()
@json_option
@pass_ctx
def status(ctx: Any, as_json: bool) -> None:
    """Each certificate the router serves: names, issuer, expiry and state."""
    from headway.cli import output
    from headway.tls import sites

    rows = sites.status(ctx.store().home, now=sites.time_now())
    if not rows and not as_json:
        output.err.print("no app on this host sets [router] tls", markup=False)
        return
    for row in rows if not as_json else []:
        row["names"] = ", ".join(row["names"])
    output.table(rows, as_json, ["app", "env", "names", "issuer", "expires", "days_left",
                                 "https_port", "state"])
    for row in rows if not as_json else []:
        if row["error"]:
            output.err.print(f"{row['app']} ({row['env']}): {row['error']}", markup=False)


@tls.command()
@click.option("--force", is_flag=True, help="renew even if not due (30 days before expiry)")
@pass_ctx
def renew(ctx: Any, force: bool) -> None:
    """Renew the app's certificate now if due (or --force); loaded without a reload."""
    from headway.cli import output
    from headway.tls import manage, sites

    outcome = manage.renew(ctx.store(), ctx.app(), ctx.env, force=force,
                           now=sites.time_now(), log=output.progress)
    if outcome is None:
        row = next(r for r in sites.status(ctx.store().home, now=sites.time_now())
                   if (r["app"], r["env"]) == (ctx.app(), ctx.env))
        click.echo(f"certificate for {', '.join(row['names'])} is not due (expires "
                   f"{row['expires']}); --force renews it now")


def register(group: click.Group) -> None:
    group.add_command(tls)
