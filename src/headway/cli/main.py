"""`headway` command line. The only module that prints or exits; everything else raises."""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from headway.errors import ConfigError, HeadwayError, NotFound, RouterError

if TYPE_CHECKING:
    from headway.cli import output

# headway.cli.output (rich) is imported inside the commands: `headway rollback` switches
# traffic before it loads, which a CLI on a saturated machine waits a second for.
NAME = r"[a-z][a-z0-9-]{0,39}"  # --env, and --app as output.APP_NAME
json_option = click.option("--json", "as_json", is_flag=True, help="machine-readable output")


def pass_ctx(command: Callable[..., None]) -> Callable[..., None]:
    """click.make_pass_decorator(output.Context, ensure=True), importing output when the command
    runs rather than when this module loads."""
    @functools.wraps(command)
    def with_context(*args: Any, **kwargs: Any) -> None:
        from headway.cli import output

        command(click.get_current_context().ensure_object(output.Context), *args, **kwargs)
    return with_context


@dataclass(frozen=True)
class Options:
    """The global options as given; what `rollback` gets instead of an output.Context."""

    config: Path
    env: str
    app_name: str | None
    log_format: str


class LazyGroup(click.Group):
    """The commands of other cli modules (and their imports) are added on first need: a
    command defined here that is not a group (`headway rollback`) never pays for them."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = self.commands.get(cmd_name)
        if command is None or isinstance(command, click.Group):
            register_all(self)
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        register_all(self)
        return super().list_commands(ctx)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-c", "--config", type=click.Path(path_type=Path), default=Path("headway.toml"),
              show_default=True, help="path to headway.toml")
@click.option("--env", "env", default="production", show_default=True,
              help="environment: its own releases, instances and [env.NAME] overrides")
@click.option("--app", "app", default=None, help="app name, when there is no headway.toml here")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              envvar="HEADWAY_LOG_FORMAT", show_default=True,
              help="progress and agent logs: text, or JSON lines with app, release and step")
@click.version_option(package_name="headway")
@click.pass_context
def cli(click_ctx: click.Context, config: Path, env: str, app: str | None,
        log_format: str) -> None:
    """Ship a web app to production from one headway.toml."""
    if not re.fullmatch(NAME, env):
        raise ConfigError(f"--env {env!r}: lowercase letters, digits and dashes, e.g. staging")
    if click_ctx.invoked_subcommand == "rollback":  # it imports output after its switch
        click_ctx.obj = Options(config, env, app, log_format)
        return
    from headway.cli import output

    output.use_log_format(log_format)
    click_ctx.obj = output.Context(config=config, env=env, app_name=app)


@cli.command()
@click.option("--dry-run", is_flag=True, help="print the plan and change nothing")
@click.option("--force", is_flag=True, help="deploy even if code and config are unchanged")
@pass_ctx
def deploy(ctx: output.Context, dry_run: bool, force: bool) -> None:
    """Build a release of the app and put it live with zero downtime."""
    from headway.cli import output

    if kube_cli().deploy(ctx, dry_run=dry_run, force=force):  # runtime = "kubernetes"
        return
    spec = ctx.spec()
    ctx.effective_config()  # refuses before anything runs if a required secret is missing
    if servers_cli().fleet_deploy(ctx, spec, dry_run=dry_run, force=force):  # [servers]: SSH
        return
    spec = servers_cli().on_host(spec)  # a fleet host: its roles' processes
    engine = ctx.engine()
    if dry_run:
        output.plan(spec, ctx.env, engine.plan(spec, ctx.env), ctx)
        return
    from headway.builder import image  # [scan] fail_on: the image is gated before it runs
    from headway.cli.supply import gate_image
    image.after_build = lambda binary, built: gate_image(ctx, spec, built, binary)
    with output.deploy_builds(ctx, spec):  # the image build's lines as they come
        outcome = engine.deploy(spec, ctx.source(spec), ctx.env, force=force)
    output.outcome(outcome)


@cli.command()
@click.argument("release", type=int, required=False)
@click.pass_obj
def rollback(options: Options, release: int | None) -> None:
    """Put the previous good release (or RELEASE) live again. Never rebuilds."""
    if servers_cli().fleet_rollback(options, release):  # [servers]: on every host
        return
    if kube_cli().rollback(options, release):  # runtime = "kubernetes"
        return
    # what output.Context.store() and .engine() do, without importing output (rich) before
    # the switch; it is imported for the first line printed, which comes after the switch
    from headway.agent.control import ensure_agent, revive
    from headway.engine import Engine
    from headway.router import HAProxy
    from headway.store import Store, home_dir

    os.environ["HEADWAY_LOG_FORMAT"] = options.log_format  # an agent started here inherits it
    store = Store(home_dir())
    revived = revive(store.home)
    engine = Engine(store, HAProxy(store.home), progress=progress_later(options.log_format),
                    ensure_agent=lambda: ensure_agent(store.home))
    try:
        result = engine.rollback(recorded_app_name(options), options.env, release)
    except NotFound:
        check_config(options)  # a typo in --env says so ("did you mean"), as other commands do
        raise
    from headway.cli import output

    if revived:
        output.err.print("the headway agent was not running: started it again")
    output.outcome(result)


def check_config(options: Options) -> None:
    """Load headway.toml as every other command does, for its errors (when there is one)."""
    from headway.cli import output

    if options.app_name is None or options.config.exists():
        output.Context(config=options.config, env=options.env, app_name=options.app_name).spec()


def progress_later(log_format: str) -> Callable[..., None]:
    """output.progress, imported on the first message."""
    def progress(message: str, /, **fields: object) -> None:
        from headway.cli import output

        output.use_log_format(log_format)
        output.progress(message, **fields)
    return progress


def recorded_app_name(options: Options) -> str:
    """The app name for a command that acts only on what was recorded (rollback): --app, else
    [app] name read straight from headway.toml; the whole file is validated only when that
    read fails, for its errors (the spec models cost a CLI a second under load)."""
    name = options.app_name
    if name is None:
        import tomllib

        try:
            name = tomllib.loads(options.config.read_text())["app"]["name"]
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError):
            pass
    if isinstance(name, str) and re.fullmatch(NAME, name):
        return name
    from headway.cli import output

    return str(output.Context(config=options.config, env=options.env,
                              app_name=options.app_name).app())


@cli.command()
@pass_ctx
def promote(ctx: output.Context) -> None:
    """Move a canary on to its next step now (or past a manual pause)."""
    if not kube_cli().signal(ctx, "promote") and not servers_cli().fleet_signal(ctx, "promote"):
        ctx.signal("promote")  # not in a cluster, not to [servers]: here


@cli.command()
@pass_ctx
def abort(ctx: output.Context) -> None:
    """Stop a running canary: its traffic goes back to the stable release at once."""
    if not kube_cli().signal(ctx, "abort") and not servers_cli().fleet_signal(ctx, "abort"):
        ctx.signal("abort")  # not in a cluster, not to [servers]: here


@cli.command()
@json_option
@click.option("--host", "hosts", multiple=True, help="[servers]: only this host (repeatable)")
@pass_ctx
def releases(ctx: output.Context, as_json: bool, hosts: tuple[str, ...]) -> None:
    """List the app's releases, newest first."""
    from headway.cli import output

    if servers_cli().fleet_releases(ctx, as_json, hosts) or kube_cli().releases(ctx, as_json):
        return
    store = ctx.recovered_store()
    live = {t["release"]: t for t in ctx.traffic(store, ctx.app())}
    rows = [{k: v for k, v in asdict(r).items() if k not in {"spec", "path"}}
            | {k: live.get(r.number, {}).get(k) for k in ("rps", "error_rate", "p99_ms")}
            for r in store.releases(ctx.app(), ctx.env)]
    output.table(rows, as_json, ["number", "status", "created", "deployed", "warm_until",
                                 "digest", "rps", "error_rate", "p99_ms", "failure"])


@cli.command()
@json_option
@click.option("-w", "--watch", is_flag=True, help="refresh every --interval until Ctrl-C")
@click.option("--interval", default=1.0, show_default=True, help="seconds between refreshes")
@click.option("--host", "hosts", multiple=True, help="[servers]: only this host (repeatable)")
@pass_ctx
def status(ctx: output.Context, as_json: bool, watch: bool, interval: float,
           hosts: tuple[str, ...]) -> None:
    """Instances, their health, traffic share, and live requests per release."""
    from headway.agent.control import no_healthy_server
    from headway.cli import output

    if servers_cli().fleet_status(ctx, as_json, hosts) or kube_cli().status(ctx, as_json, watch):
        return
    if watch:
        output.watch_status(ctx, interval)
    else:
        data = ctx.status()
        output.status(data, as_json)
        if why := no_healthy_server(data):  # after the table, which shows the instances
            raise RouterError(why, hint="`headway logs` says why; `headway rollback` to go back")


@cli.command()
@click.option("-n", "--limit", default=50, show_default=True)
@json_option
@click.option("--host", "hosts", multiple=True, help="[servers]: only this host (repeatable)")
@pass_ctx
def events(ctx: output.Context, limit: int, as_json: bool, hosts: tuple[str, ...]) -> None:
    """What happened to the app, oldest first."""
    from headway.cli import output

    if servers_cli().fleet_events(ctx, limit, as_json, hosts):  # [servers]: every host's
        return
    output.table(ctx.recovered_store().events(ctx.app(), ctx.env, limit=limit), as_json,
                 ["ts", "release", "kind", "message"])


@cli.command()
@click.option("-f", "--follow", is_flag=True, help="keep printing new lines")
@click.option("--process", "process", default=None, help="only this process type")
@click.option("-n", "--lines", type=int, default=None,
              help="lines per instance  [default: 20; all with --since]")
@click.option("--since", metavar="DURATION|TIME", default=None,
              help="only lines from then on: 30s, 10m, 2h, 1d, or a local time such as "
                   "2026-11-27T10:00 or 10:00 (today). A line the app wrote has no time of its "
                   "own: it takes that of the last '--- headway' line before it, or of the "
                   "file's last change")
@click.option("--grep", metavar="PATTERN", default=None, help="only lines matching this regex")
@click.option("--release", type=int, default=None, help="only this release's instances")
@json_option
@click.option("--host", "hosts", multiple=True, help="[servers]: only this host (repeatable)")
@pass_ctx
def logs(ctx: output.Context, follow: bool, process: str | None, lines: int | None,
         since: str | None, grep: str | None, release: int | None, as_json: bool,
         hosts: tuple[str, ...] = ()) -> None:
    """The instances' output, each line tagged with its instance."""
    from headway.cli import output

    if kube_cli().logs(ctx, follow=follow, process=process, lines=lines, since=since, grep=grep,
                       release=release, as_json=as_json):  # runtime = "kubernetes"
        return
    only = output.log_filter(since, grep)
    if servers_cli().fleet_logs(ctx, hosts, as_json, process=process, lines=lines, since=since,
                                grep=grep, release=release, follow=follow):  # [servers]
        return
    output.logs(ctx.recovered_store(), ctx.app(), ctx.env, process=process, lines=lines,
                follow=follow, as_json=as_json, release=release, only=only)


@cli.command()
@click.option("--yes", is_flag=True, help="do not ask")
@click.option("--volumes", is_flag=True, help="also delete the data in its [volumes]")
@pass_ctx
def destroy(ctx: output.Context, yes: bool, volumes: bool) -> None:
    """Stop the app's instances and remove it from the router."""
    kube_cli().refuse(ctx, "destroy")  # runtime = "kubernetes": not built, says what to run
    if servers_cli().fleet_destroy(ctx, yes, volumes):  # [servers]: on every host
        return
    from headway.cli.output import confirm_destroy

    app = ctx.app()
    confirm_destroy(f"{app} ({ctx.env}) on this host", yes=yes, volumes=volumes)
    ctx.engine().destroy(app, ctx.env, volumes=volumes)
    ctx.after_destroy()
    click.echo(f"{app} ({ctx.env}) destroyed")
    if ctx.store().q("SELECT 1 FROM accessories WHERE app=? AND env=?", app, ctx.env):
        click.echo("its accessories are stopped; their data and backups are kept "
                   "(the next deploy starts them again)")


@cli.command()
@click.option("--path", type=click.Path(path_type=Path), default=Path("."), show_default=True)
@click.option("--force", is_flag=True, help="overwrite existing files")
@click.option("--port", default=8080, show_default=True, help="router port to write")
@click.option("--containerfile", is_flag=True,
              help="also write the Containerfile and .containerignore Headway would generate")
def init(path: Path, force: bool, port: int, containerfile: bool) -> None:
    """Detect the app in PATH and write a commented headway.toml."""
    from headway.builder import containerfile as gen
    from headway.builder import needs as scan
    from headway.builder.detect import app_name, apps_below, detect, render_toml
    from headway.spec.load import parse_spec

    if not path.is_dir():
        raise ConfigError(f"--path {path}: no such folder")
    try:
        try:
            app, found = path, detect(path, partial=True)
        except ConfigError:
            below_all = apps_below(path)
            if len(below_all) > 1:
                names = ", ".join(f"{p.name}/" for p in below_all)
                raise ConfigError(f"{path}: no app at the top, and several below it ({names})",
                                  hint=f"run headway init --path {below_all[0].name} (or "
                                  "another), then headway deploy from that folder") from None
            if not below_all:
                raise
            below = below_all[0]
            found = detect(below, partial=True)
            app, found = below, replace(found, name=app_name(path), reasons=[
                f"the app is in {below.name}/ (headway.toml stays here: app.path)",
                *found.reasons])
        needs = scan.scan(app, found, path)
    except OSError as exc:
        raise ConfigError(f"{path}: could not read the app's files ({exc})") from None
    toml = render_toml(found, port=port, needs=needs)
    if app != path:  # headway.toml stays at the top, where the user runs headway
        toml = toml.replace("[app]\n", f'[app]\npath = "{app.name}"{" " * (18 - len(app.name))}'
                            "# the app's folder, relative to this file\n", 1)
    parse_spec(toml, source="the headway.toml init would write")
    files = {path / "headway.toml": toml}
    if containerfile:
        if found.containerfile:
            raise ConfigError(f"{app / found.containerfile} exists: it is used as is",
                              hint='to build with a generated one instead, set [build] '
                              'containerfile = "generate"')
        files |= {app / "Containerfile": gen.render(found, source=app),
                  app / ".containerignore": gen.ignore_file([])}
    for where in files:
        if where.exists() and not force:
            raise ConfigError(f"{where} exists", hint="pass --force to overwrite it")
    click.echo(found.explain)
    click.echo("\n".join(f"  {reason}" for reason in found.reasons if reason != found.explain))
    if needs.found:
        click.echo("found:")
        click.echo("\n".join(f"  {line}" for line in needs.found))
    if needs.notes:
        click.echo("to decide (the key to set, in headway.toml or with the command):")
        for note in needs.notes:
            click.echo(f"  - {note.text}\n      {note.key}")
    for where, text in files.items():
        where.write_text(text)
        click.echo(f"wrote {where}")
    if not found.command:
        raise ConfigError(f"{path / 'headway.toml'} is written, but the web command could not "
                          f"be decided: {found.explain}", hint="set it there: [processes.web] "
                          'command = "..." (it must listen on $HOST:$PORT)')
    steps = [f"headway secrets set {v.name}" for v in needs.secrets]
    click.echo("next: " + "; ".join([*steps, "headway deploy"]))


@cli.command()
@click.option("--push", is_flag=True, help="push the image to [registry] server")
@click.option("--sign", is_flag=True, help="sign the pushed image ([registry] sign_by, podman)")
@click.option("--explain", is_flag=True, help="say what was detected and why; build nothing")
@pass_ctx
def build(ctx: output.Context, push: bool, explain: bool, sign: bool = False) -> None:
    """Build the app's container image (tags: git sha, latest) without deploying it."""
    import tempfile

    from headway.builder import image
    from headway.builder.containerfile import render
    from headway.runtime import artifact
    from headway.runtime.container import repository
    from headway.store import home_dir

    spec = ctx.spec()
    source = ctx.source(spec)
    found = image.detected(source, spec)  # [build] containerfile decides, as in a deploy
    if explain:
        click.echo("\n".join([*found.reasons, "", f"{found.containerfile} (used as is)"
                              if found.containerfile else render(found, base=spec.build.base_image)]))
        return
    if push and not spec.registry.server:
        raise ConfigError(f"{ctx.config}: --push needs [registry] server")
    from headway.supply.sign import require  # --sign: --push and [registry] sign_by
    require(spec.registry, push=push, sign=sign, config=ctx.config)
    binary = image.engine_binary(spec.app.runtime if spec.app.runtime in {"podman", "docker"}
                                 else spec.build.engine)  # the engine deploys would use
    if push:
        image.reachable(spec.registry)
    with tempfile.TemporaryDirectory(prefix="headway-build-") as tmp:
        context = Path(tmp) / "context"
        artifact.materialize(source, artifact.snapshot_files(source, home_dir()), context)
        image.prepare_context(source, context, spec)
        revision = image.git_facts(source)["revision"][:12]
        with ctx.build_progress(Path(tmp), "build.log"):  # its lines as they come
            built = image.build(binary, context, found, repo=repository(spec),
                                tags=[*([revision] if revision else []), "latest"],
                                title=spec.app.name, source=source,
                                platforms=spec.build.platforms, log=Path(tmp) / "build.log")
    from headway.cli.supply import gate_image  # [scan] fail_on: exit 8, nothing pushed
    gate_image(ctx, spec, built.image, binary)
    if push:
        from headway.secrets import reveal_env, secrets_state

        store, app = ctx.store(), spec.app.name
        image.publish(binary, built.names, spec.registry, reveal_env(
            store, app, ctx.env, int(str(secrets_state(store, app, ctx.env)["version"]))))
    click.echo(f"built {', '.join(built.names)} ({built.image[:12]}) in {built.seconds:.1f}s"
               + (" and pushed" if push else "")
               + (" (signed)" if push and spec.registry.sign_by else ""))


@cli.group()
def generate() -> None:
    """Write files for the rest of the toolchain."""


@generate.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("monitoring"),
              show_default=True, help="folder to write into")
@click.option("--interval", default="15s", show_default=True, help="scrape and rule interval")
@pass_ctx
def monitoring(ctx: output.Context, out: Path, interval: str) -> None:
    """Prometheus scrape config, alert rules and a Grafana dashboard."""
    from headway.observer import monitoring as gen

    observe = ctx.spec().observe
    router = f"{observe.metrics_address}:{observe.router_metrics_port}" \
        if observe.router_metrics_port else None
    files = {"prometheus.yml": gen.prometheus_config(
                 headway=f"{observe.metrics_address}:{observe.metrics_port}", router=router,
                 interval=interval),
             "headway-alerts.yml": gen.alert_rules(),
             "grafana-dashboard.json": gen.grafana_dashboard()}
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out / name).write_text(text)
        click.echo(f"wrote {out / name}")


@cli.group()
def config() -> None:
    """The effective config of an environment."""


@config.command()
@json_option
@pass_ctx
def show(ctx: output.Context, as_json: bool) -> None:
    """headway.toml as it applies to --env: variables merged, secrets masked."""
    from headway.cli import output

    output.show_config(ctx.effective_config(strict=False), as_json)


@config.command()
@pass_ctx
def check(ctx: output.Context) -> None:
    """Validate headway.toml for --env: keys, types, and that required secrets are set."""
    data = ctx.effective_config()
    spec, store = ctx.spec(), ctx.store()
    from headway.store import ports  # ports another home's agent serves; a shared router port

    ports.check_service_ports(store.home, {"observe.metrics_port": spec.observe.metrics_port})
    ports.check_router_port(store.apps(), app=spec.app.name, env=ctx.env, port=spec.router.port,
                            hosts=spec.router.hosts, default=spec.router.default)
    click.echo(f"{ctx.config}: valid for --env {ctx.env} ({len(data['env'])} variables, "
               f"{len(data['secrets'])} secrets)")


def servers_cli() -> Any:
    from headway.cli import servers

    return servers


def kube_cli() -> Any:
    from headway.cli import kube_runtime

    return kube_runtime


def register_all(group: click.Group) -> None:
    """Add the commands defined in the other cli modules (once)."""
    if "secrets" in group.commands:
        return
    from headway.cli import doctor as doctor_cli
    from headway.cli.ci import register as register_ci
    from headway.cli.data import accessory, backup
    from headway.cli.run import register as register_run
    from headway.cli.secrets import secrets
    from headway.cli.supply import register as register_supply
    from headway.cli.tls import register as register_tls

    group.add_command(secrets)
    group.add_command(accessory)
    group.add_command(backup)
    group.add_command(doctor_cli.agent)  # `headway agent [install]`
    group.add_command(doctor_cli.doctor)
    register_run(group)
    register_ci(group)  # `headway ci run`, `headway generate ci`
    register_supply(group)  # `headway sbom`, `headway scan`
    from headway.cli.dashboard import register as register_dashboard  # `dashboard token`
    register_dashboard(group)
    servers_cli().register(group)  # `headway servers check|setup|trust|converge`
    register_tls(group)  # `headway tls status|renew`
    from headway.cli.kube import register as register_kube  # `generate kubernetes|helm`
    register_kube(group)

def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        if _wants_json():
            _json_error(exc.format_message(), None, exc.exit_code)
        exc.show()
        sys.exit(exc.exit_code)
    except HeadwayError as exc:
        from headway.cli import output

        if _wants_json():
            _json_error(exc.message, exc.hint, exc.exit_code)
        output.error(exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


def _wants_json() -> bool:
    """--json among Headway's own arguments (not those after `--`, a command's)."""
    args = sys.argv[1:]
    return "--json" in (args[:args.index("--")] if "--" in args else args)


def _json_error(message: str, hint: str | None, code: int) -> None:
    """With --json a failure is a JSON object on stdout too, so a script reads one format."""
    import json

    print(json.dumps({"error": message, "hint": hint, "exit_code": code}))
    sys.exit(code)

