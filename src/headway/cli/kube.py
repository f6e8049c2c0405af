"""`headway generate kubernetes` and `headway generate helm`: the app's Kubernetes objects as
a kustomize base with one overlay per environment, or as a Helm chart. Writes files only:
talks to no cluster, and never writes a secret value (only Secret names and keys)."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from headway.errors import ConfigError

ENV_HELP = "one environment (production or an [env.NAME]) [default: all of them]"


def _load(config: Path) -> Any:
    from headway.spec import load_spec

    return load_spec(config)  # runtime = "kubernetes" is fine here: nothing is deployed


def _env_option(env: str | None) -> str | None:
    """--env of the command, else a --env given to `headway` itself, else None (all)."""
    root = click.get_current_context().find_root()
    if env is None and root.get_parameter_source("env") in {ParameterSource.COMMANDLINE,
                                                            ParameterSource.ENVIRONMENT}:
        return str(root.params["env"])
    return env


def _inputs(config: Path, env: str | None) -> tuple[Any, list[Any], list[str], frozenset[str]]:
    from headway.kube import source
    from headway.store import home_dir

    spec = _load(config)
    names = source.environment_names(spec, _env_option(env))
    home = home_dir()
    secret_names, optional = source.secret_names(spec, names, home)
    return spec, source.environments(spec, names, home), secret_names, optional


@contextlib.contextmanager
def _naming(config: Path) -> Iterator[None]:
    """A key the objects cannot be made from is named with its file, as load errors are."""
    try:
        yield
    except ConfigError as exc:
        exc.message = f"{config}: {exc.message}"
        raise


def _write(out: Path, files: dict[str, str], force: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not force:
            raise ConfigError(f"--out {out}: exists and is not empty",
                              hint="pass --force to replace it, or another --out")
        if not (out / ".headway-generated").exists():
            raise ConfigError(f"--out {out}: --force only replaces a folder Headway wrote "
                              "(it has a .headway-generated file)", hint="choose another --out")
        shutil.rmtree(out)
    for name, text in {**files, ".headway-generated": ""}.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _report(spec: Any, envs: list[Any], out: Path, files: dict[str, str], started: float) -> None:
    click.echo(f"wrote {len(files)} files to {out} in {time.monotonic() - started:.2f}s")
    for env in envs:
        where = env.image.reference
        click.echo(f"  {env.name}: namespace {env.namespace}, image {where}")
    if not spec.registry.server:
        click.echo("note: no [registry] server, so the image is localhost/headway/...: a cluster "
                   "cannot pull it; set [registry] server and push (headway build --push)")
    if any(e.image.tag == "latest" and not e.image.digest for e in envs):
        click.echo("note: no release built for some environments: their image is :latest "
                   "(deploy or build first to pin ENV-N)")


@click.command("kubernetes")
@click.option("--env", "env", default=None, help=ENV_HELP)
@click.option("--out", type=click.Path(path_type=Path), default=Path("kubernetes"),
              show_default=True, help="folder to write into")
@click.option("--force", is_flag=True, help="replace the folder if Headway wrote it before")
@click.pass_context
def generate_kubernetes(click_ctx: click.Context, env: str | None, out: Path,
                        force: bool) -> None:
    """Kubernetes objects: a kustomize base and an overlay per environment (no cluster used)."""
    from headway.kube import kustomize, readme

    started = time.monotonic()
    config = click_ctx.find_root().params["config"]
    spec, envs, names, optional = _inputs(config, env)
    with _naming(config):
        files = kustomize.files(spec, envs, secret_names=names, optional=optional)
    files["README.md"] = readme.kustomize(spec, envs, files, names)
    _write(out, files, force)
    _report(spec, envs, out, files, started)
    click.echo(f"render: kubectl kustomize {out}/overlays/{envs[0].name}; the order to apply "
               f"is in {out}/README.md")


@click.command("helm")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="folder to write the chart into [default: chart/APP]")
@click.option("--force", is_flag=True, help="replace the folder if Headway wrote it before")
@click.pass_context
def generate_helm(click_ctx: click.Context, out: Path | None, force: bool) -> None:
    """A Helm chart of the same objects, with values-ENV.yaml per environment."""
    from headway.kube import helm

    started = time.monotonic()
    config = click_ctx.find_root().params["config"]
    spec, envs, names, optional = _inputs(config, None)
    try:
        version = metadata.version("headway")
    except metadata.PackageNotFoundError:
        version = "0.1.0"
    with _naming(config):
        files = helm.chart(spec, envs, secret_names=names, optional=optional,
                           version=version.split("+")[0])
    out = out or Path("chart") / spec.app.name
    _write(out, files, force)
    _report(spec, envs, out, files, started)
    click.echo(f"install: helm upgrade --install {spec.app.name} {out} -f "
               f"{out}/values-production.yaml --namespace NAMESPACE")


def register(group: click.Group) -> None:
    """`headway generate kubernetes` and `headway generate helm`."""
    generate: Any = group.commands["generate"]
    generate.add_command(generate_kubernetes)
    generate.add_command(generate_helm)
