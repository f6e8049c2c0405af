"""`headway ci run [STAGE...]` and `headway generate ci`. Each stage is a thin call of what
Headway already has: the app's own lint and test commands (output on stderr), `headway build`,
`headway scan` when this Headway has one, the registry push of `headway build --push`, and
`headway deploy` itself. One line per stage on stdout, with its time; a failing stage stops
the run and its error names it. Never passes Headway's own secrets to the app's commands."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from headway.cli import output
from headway.errors import ConfigError, HeadwayError, RuntimeFailure
from headway.pipeline import providers, stages
from headway.spec.models import NAME, Spec

pass_ctx = click.make_pass_decorator(output.Context, ensure=True)
SSH_KEY_ENV = "HEADWAY_SSH_KEY"  # for deploys to servers over SSH (read by that transport)


@click.group()
def ci() -> None:
    """Run the CI pipeline's stages here, exactly as the generated CI files do."""


@ci.command("run")
@click.argument("stage", nargs=-1, metavar="[STAGE]...")
@click.option("--env", "target", default=None,
              help="environment the deploy stage deploys to [default: [ci] env, staging]")
@pass_ctx
def run_stages(ctx: output.Context, stage: tuple[str, ...], target: str | None) -> None:
    """Run lint, test, build, scan, push, deploy (or the STAGEs named), in that order."""
    chosen = stages.select(stage)
    spec = ctx.spec()
    ctx.env = _target_env(ctx, spec, target)
    click_ctx = click.get_current_context()
    for name in chosen:
        started = time.monotonic()
        try:
            status, note = STAGE_FUNCTIONS[name](click_ctx, ctx, spec)
        except HeadwayError as exc:
            _line(name, "FAILED", started, exc.message.splitlines()[0])
            exc.message = f"ci run: stage {name} failed: {exc.message}"
            raise
        _line(name, status, started, note)


def _line(stage: str, status: str, started: float, note: str) -> None:
    seconds = time.monotonic() - started
    click.echo(f"{stage:<7} {status:<7} {seconds:6.1f}s  {note}")


def _target_env(ctx: output.Context, spec: Spec, target: str | None) -> str:
    """--env of `ci run`, else a --env given to `headway` itself, else [ci] env."""
    root = click.get_current_context().find_root()
    given = root.get_parameter_source("env") in {ParameterSource.COMMANDLINE,
                                                 ParameterSource.ENVIRONMENT}
    env = target or (ctx.env if given else spec.ci.env)
    if not re.fullmatch(NAME, env):
        raise ConfigError(f"--env {env!r}: lowercase letters, digits and dashes, e.g. staging")
    return env


# stages: each returns (status, note) or raises a HeadwayError --------------------------------
Result = tuple[str, str]


def _lint(click_ctx: click.Context, ctx: output.Context, spec: Spec) -> Result:
    source = ctx.source(spec)
    return _app_check("lint", stages.lint_command(source, spec.ci), source, spec)


def _test(click_ctx: click.Context, ctx: output.Context, spec: Spec) -> Result:
    source = ctx.source(spec)
    return _app_check("test", stages.test_command(source, spec.ci), source, spec)


def _app_check(stage: str, check: stages.Check, source: Path, spec: Spec) -> Result:
    if check.argv is None:
        if getattr(spec.ci, stage) is not None:
            return "skipped", check.why
        raise ConfigError(check.why, hint=_missing_hint(stage, source))
    command = shlex.join(check.argv)
    try:
        code = subprocess.run(check.argv, cwd=source, env=_app_env(spec), stdin=subprocess.DEVNULL,
                              stdout=sys.stderr, stderr=sys.stderr, check=False).returncode
    except FileNotFoundError:
        raise RuntimeFailure(f"{check.argv[0]}: command not found ({check.why})",
                             hint=f"install it, or set [ci] {stage} in headway.toml") from None
    if code != 0:
        raise HeadwayError(f"`{command}` exited {code} (its output is above)",
                           hint=f"run `{command}` in {source} to see it again")
    return "ok", f"{command} ({check.why})"


def _missing_hint(stage: str, source: Path) -> str:
    node = (source / "package.json").is_file()
    example = {("lint", False): "ruff check .", ("test", False): "pytest -q",
               ("lint", True): "npx eslint .", ("test", True): "node --test"}[stage, node]
    return (f'set [ci] {stage} = "{example}" in headway.toml (or {stage} = "" to run '
            f"without a {stage} stage)")


def _app_env(spec: Spec) -> dict[str, str]:
    """This environment without Headway's own variables and secrets (master key, registry
    password, SSH key): the app's tests have no business seeing them."""
    drop = {spec.registry.password_env, SSH_KEY_ENV}
    return {k: v for k, v in os.environ.items() if not k.startswith("HEADWAY_") and k not in drop}


def _builds_image(spec: Spec) -> bool:
    from headway.runtime.container import resolve

    return bool(spec.registry.server) or resolve(spec.app.runtime, spec.build) != "process"


def _build(click_ctx: click.Context, ctx: output.Context, spec: Spec) -> Result:
    if not _builds_image(spec):
        return "skipped", ("app.runtime is process and there is no [registry] server: "
                           "`deploy` builds the release (its folder and virtualenv)")
    click_ctx.invoke(_command(click_ctx, "build"), push=False, explain=False)
    return "ok", "headway build"


def _scan(click_ctx: click.Context, ctx: output.Context, spec: Spec) -> Result:
    root = click_ctx.find_root()
    scan = root.command.get_command(root, "scan")  # type: ignore[attr-defined]
    if scan is None or not spec.scan.fail_on:
        return "ok", "scan: not configured ([scan] fail_on is not set): passed"
    click_ctx.invoke(scan)
    return "ok", "headway scan"


def _push(click_ctx: click.Context, ctx: output.Context, spec: Spec) -> Result:
    if not spec.registry.server:
        return "skipped", "no [registry] server to push to"
    from headway.builder import image
    from headway.runtime.container import repository
    from headway.secrets import reveal_env, secrets_state

    binary = image.engine_binary(spec.build.engine)
    revision = image.git_facts(ctx.source(spec))["revision"][:12]
    names = [f"{repository(spec)}:{tag}" for tag in [*([revision] if revision else []), "latest"]]
    for name in names:
        if subprocess.run([binary, "image", "exists", name], check=False).returncode != 0:
            raise ConfigError(f"{name} is not built on this machine",
                              hint="build it first: headway ci run build push")
    image.reachable(spec.registry)
    store, app = ctx.store(), spec.app.name
    version = int(str(secrets_state(store, app, ctx.env)["version"]))
    image.publish(binary, names, spec.registry, reveal_env(store, app, ctx.env, version))
    return "ok", f"pushed {', '.join(names)}"


def _deploy(click_ctx: click.Context, ctx: output.Context, spec: Spec) -> Result:
    click_ctx.invoke(_command(click_ctx, "deploy"), dry_run=False, force=False)
    return "ok", f"headway --env {ctx.env} deploy"


def _command(click_ctx: click.Context, name: str) -> click.Command:
    root = click_ctx.find_root()
    command: click.Command = root.command.get_command(root, name)  # type: ignore[attr-defined]
    return command


STAGE_FUNCTIONS: dict[str, Callable[[click.Context, output.Context, Spec], Result]] = {
    "lint": _lint, "test": _test, "build": _build, "scan": _scan, "push": _push,
    "deploy": _deploy}


# generate ci ----------------------------------------------------------------------------------
@click.command("ci")
@click.option("--provider", required=True, metavar="|".join(providers.PROVIDERS),
              help="whose CI file to write")
@click.option("--force", is_flag=True, help="overwrite the file if it exists")
@click.option("--branch", default=None,
              help="the default branch [default: origin's, else the current one, else main]")
@click.option("--runs-on", default="ubuntu-latest", show_default=True,
              help="runner label (GitHub, Gitea) or VM image (Azure)")
@pass_ctx
def generate_ci(ctx: output.Context, provider: str, force: bool, branch: str | None,
                runs_on: str) -> None:
    """Write the provider's CI file; its steps run `headway ci run STAGE`.

    Checks on pull requests, staging on the default branch, production on v* tags behind the
    provider's approval, a manual rollback."""
    if provider not in providers.PROVIDERS:
        raise ConfigError(f"--provider {provider!r}: unknown provider",
                          hint=f"one of: {', '.join(providers.PROVIDERS)}")
    spec = ctx.spec()
    root = ctx.config.parent
    path = root / providers.PROVIDERS[provider]
    if path.exists() and not force:
        raise ConfigError(f"{path} exists", hint="pass --force to overwrite it")
    pipeline = providers.Pipeline(
        branch=branch or _default_branch(root), runs_on=runs_on,
        secrets=["HEADWAY_MASTER_KEY", spec.registry.password_env, SSH_KEY_ENV],
        setup=_setup(ctx.source(spec), spec, root))
    text = providers.render(provider, pipeline)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    click.echo(f"wrote {path}")
    click.echo(f"set these secrets in {provider}'s secret store: {', '.join(pipeline.secrets)}")
    source = ctx.source(spec)
    for stage, check in (("lint", stages.lint_command(source, spec.ci)),
                         ("test", stages.test_command(source, spec.ci))):
        if check.argv is None and getattr(spec.ci, stage) is None:
            click.echo(f"note: {check.why}, so `headway ci run {stage}` fails until you "
                       f"{_missing_hint(stage, source)}")


def _setup(source: Path, spec: Spec, root: Path) -> providers.Setup:
    try:
        version = metadata.version("headway")
    except metadata.PackageNotFoundError:
        version = ""
    where = os.path.relpath(source, root.resolve())
    lines: list[str] = []
    if (source / "requirements.txt").is_file():
        lines.append(f"python -m pip install -r {Path(where, 'requirements.txt').as_posix()}")
    tools = [argv[0] for argv in (stages.lint_command(source, spec.ci).argv,
                                  stages.test_command(source, spec.ci).argv) if argv]
    node = next((t for t in tools if t in {"npm", "bun"}), None)
    if (source / "package.json").is_file():
        node = node or ("bun" if stages.test_command(source, spec.ci).argv == ["bun", "test"]
                        else "npm")
        install = "bun install" if node == "bun" else (
            "npm ci" if (source / "package-lock.json").is_file() else "npm install")
        lines.append(install if where == "." else f"cd {shlex.quote(where)} && {install}")
    pins = [_pin("ruff" if t == "ruff" else "flake8" if t == "flake8" else "pytest")
            for t in tools if t in {"ruff", "flake8", "python3"}]
    if pins:
        lines.append("python -m pip install " + " ".join(f'"{p}"' for p in pins))
    return providers.Setup(headway=f"headway=={version}" if version else "headway",
                           node=node, app=lines)


def _pin(package: str) -> str:
    try:
        return f"{package}=={metadata.version(package)}"
    except metadata.PackageNotFoundError:
        return package


def _default_branch(root: Path) -> str:
    for argv in (["git", "-C", str(root), "symbolic-ref", "--short", "refs/remotes/origin/HEAD"],
                 ["git", "-C", str(root), "branch", "--show-current"]):
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip().removeprefix("origin/")
    return "main"


def register(group: click.Group) -> None:
    """`headway ci`, `headway generate ci` and `headway generate compose`."""
    from headway.cli.compose import generate_compose

    group.add_command(ci)
    generate: Any = group.commands["generate"]
    generate.add_command(generate_ci)
    generate.add_command(generate_compose)
