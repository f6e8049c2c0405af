"""`headway generate compose`: writes compose.yaml and compose.override.yaml beside
headway.toml (headway.pipeline.compose renders them), and the untracked .env they read:
passwords and development secrets made here, mode 0600, kept across runs (a database volume
keeps the password it was made with), `.env` added to .gitignore. Never overwrites a file
without --force, never prints a value from .env."""

from __future__ import annotations

import os
import secrets as random
import shutil
import string
import subprocess
import tempfile
from pathlib import Path

import click
from click.core import ParameterSource

from headway.builder.common import Detected
from headway.cli import output
from headway.errors import ConfigError
from headway.pipeline import compose
from headway.spec.models import Spec

pass_ctx = click.make_pass_decorator(output.Context, ensure=True)
FILES = ("compose.yaml", "compose.override.yaml")
DEV_ENV = "development"
ALPHABET = string.ascii_letters + string.digits  # safe in URLs, in .env and in a shell


@click.command("compose")
@click.option("--force", is_flag=True, help="overwrite compose.yaml and compose.override.yaml "
              "(.env keeps its values either way)")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True,
              help="host port (on 127.0.0.1) the web process is published on")
@pass_ctx
def generate_compose(ctx: output.Context, force: bool, port: int) -> None:
    """Write compose.yaml, compose.override.yaml and .env for local development.

    The app's image and its accessories (official postgres/redis images, named volumes,
    healthchecks the app waits for); [env] of --env (default: development); secrets and
    passwords in .env."""
    spec = ctx.spec()
    root, source = ctx.config.parent.resolve(), ctx.source(spec)
    targets = [root / name for name in FILES]
    for path in targets:
        if path.exists() and not force:
            raise ConfigError(f"{path} exists", hint="pass --force to overwrite it (.env keeps "
                              "its values)")
    dotenv = root / ".env"
    _refuse_tracked(dotenv)
    try:
        found, build, written = _build(source, root, spec)
        rendered = compose.render(spec, found, build,
                                  env=spec.environment(_env_name(ctx)), port=port)
        for path, text in zip(targets, (rendered.main, rendered.override), strict=True):
            path.write_text(text)
            written.append(path)
        added = write_dotenv(dotenv, rendered.variables)
        ignored = ensure_ignored(root / ".gitignore", ".env")
    except OSError as exc:
        raise ConfigError(f"{exc.filename or root}: cannot write it ({exc.strerror})",
                          hint="run it where you may write beside headway.toml") from None
    for path in written:
        click.echo(f"wrote {path}")
    click.echo(f"{dotenv}: {', '.join(added) + ' added' if added else 'kept as it was'} "
               "(mode 0600, values not shown)")
    if ignored:
        click.echo(f"added .env to {root / '.gitignore'}")
    for note in rendered.notes:
        click.echo(f"note: {note}")
    click.echo(f"next: podman-compose up (or docker compose up); the app answers on "
               f"http://127.0.0.1:{port}")


def _env_name(ctx: output.Context) -> str:
    """--env when given, else development: compose is for a developer's machine."""
    root = click.get_current_context().find_root()
    given = root.get_parameter_source("env") in {ParameterSource.COMMANDLINE,
                                                 ParameterSource.ENVIRONMENT}
    return ctx.env if given else DEV_ENV


def _build(source: Path, root: Path, spec: Spec) -> tuple[Detected, compose.Build, list[Path]]:
    """The app's own Containerfile, else the generated one inline; a generated file the build
    needs (a requirements list Headway derives) and a .containerignore (so .env, .git and
    virtualenvs never reach the image) are written beside the app when it has none."""
    from headway.builder import containerfile, image
    from headway.runtime import artifact
    from headway.store import home_dir

    context = os.path.relpath(source, root)
    context = "." if context == "." else f"./{context}"
    found = image.detected(source, spec)
    written: list[Path] = []
    if not any((source / f).exists() for f in (".containerignore", ".dockerignore")):
        (source / ".containerignore").write_text(containerfile.ignore_file([]))
        written.append(source / ".containerignore")
    if found.containerfile:
        return found, compose.Build(context, dockerfile=found.containerfile), written
    if found.language in {"container", "procfile"}:
        raise ConfigError(f"{source}: no Containerfile or Dockerfile, and Headway generates "
                          "them for Python and Node apps only",
                          hint="add one to the app: compose builds the app's image with it")
    with tempfile.TemporaryDirectory(prefix="headway-compose-") as tmp:
        copy = Path(tmp) / "app"
        artifact.materialize(source, artifact.snapshot_files(source, home_dir()), copy)
        before = {p.name for p in copy.iterdir()}
        text = containerfile.render(found, base=spec.build.base_image, source=copy)
        for made in sorted(p for p in copy.iterdir() if p.name not in before):
            (source / made.name).write_bytes(made.read_bytes())  # the build COPYs it
            written.append(source / made.name)
    return found, compose.Build(context, inline=text), written


def _refuse_tracked(dotenv: Path) -> None:
    if shutil.which("git") is None:
        return  # no git, nothing tracked
    done = subprocess.run(["git", "-C", str(dotenv.parent), "ls-files", "--error-unmatch",
                           dotenv.name], capture_output=True, check=False)
    if done.returncode == 0:
        raise ConfigError(f"{dotenv} is tracked by git: passwords written there would be "
                          "committed", hint=f"git rm --cached {dotenv.name}, then run this again")


def write_dotenv(path: Path, wanted: list[compose.Variable]) -> list[str]:
    """Add the variables .env lacks, each a new random value; never change one it has.
    Mode 0600 either way. Returns the names added."""
    text = path.read_text() if path.exists() else ""
    have = {line.split("=", 1)[0].strip().removeprefix("export ").strip()
            for line in text.splitlines() if "=" in line and not line.lstrip().startswith("#")}
    lines = [f"# {v.why}\n{v.name}={''.join(random.choice(ALPHABET) for _ in range(v.length))}"
             for v in wanted if v.name not in have]
    if lines:
        head = "" if text else ("# Written by `headway generate compose`: development values, "
                                "never committed. Existing values are kept.\n")
        sep = "" if not text or text.endswith("\n") else "\n"
        text = text + sep + head + "\n".join(lines) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    return [v.name for v in wanted if v.name not in have]


def ensure_ignored(gitignore: Path, name: str) -> bool:
    """Append `name` to .gitignore unless a pattern there already ignores it."""
    import pathspec

    text = gitignore.read_text() if gitignore.exists() else ""
    if pathspec.GitIgnoreSpec.from_lines(text.splitlines()).match_file(name):
        return False
    sep = "" if not text or text.endswith("\n") else "\n"
    gitignore.write_text(f"{text}{sep}# secrets and passwords for compose (headway generate "
                         f"compose)\n{name}\n")
    return True
