"""`headway deploy|rollback|status|releases|logs|run|promote|abort` when [app] runtime =
"kubernetes" (and the refusal of `accessory` and `backup`): each
function returns False when the app is not on that runtime (the command goes on as before),
else does the command against the cluster (headway.kube.rollout / view) and returns True.
Secret values go from Headway's vault into the release's Secret object only: never printed,
never in argv or another object. The image is the one `headway build --push` (or CI) made
for the app's git commit: this never builds."""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any

import click

from headway.errors import ConfigError

RELEASE_COLUMNS = ["number", "status", "created", "deployed", "image", "replicas", "failure"]


def on_kubernetes(config: Path) -> bool:
    """[app] runtime read straight from headway.toml (cheap: no models, no store)."""
    try:
        data = tomllib.loads(config.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    app = data.get("app")
    return isinstance(app, dict) and app.get("runtime") == "kubernetes"


def _rollout(config: Path, env: str, *, spec: Any = None) -> Any:
    from headway.kube.cluster import Cluster
    from headway.kube.release import refuse_unsupported
    from headway.kube.rollout import Rollout
    from headway.spec import load_spec

    spec = spec or load_spec(config)
    refuse_unsupported(spec, str(config))
    namespace = spec.kubernetes.namespace or f"{spec.app.name}-{env}"
    cluster = Cluster.connect(spec.kubernetes.context, namespace)
    return Rollout(cluster, spec, env, progress=_progress)


def _progress(message: str) -> None:
    from headway.cli import output

    output.progress(message)


def _secrets(spec: Any, env: str, config: Path) -> tuple[dict[str, str], str]:
    """(name -> value, fingerprint): [secrets] sources synced into the vault first, as a
    deploy on the other runtimes does; a required name not set refuses the deploy."""
    from headway.secrets import Vault, load_key, reveal_env, secrets_state, sources
    from headway.store import Store, home_dir

    store, app = Store(home_dir()), spec.app.name
    sources.sync(store, app, env, spec.secrets)
    state = secrets_state(store, app, env)
    version = int(str(state["version"]))
    names = Vault(store, load_key(store.home)).names(app, env) if version else []
    missing = [n for n in spec.app.secrets if n not in names and n not in spec.secrets]
    if missing:
        raise ConfigError(f"{config}: app.secrets: {', '.join(missing)} not set for --env {env}",
                          hint=f"headway --env {env} secrets set {missing[0]}")
    return reveal_env(store, app, env, version), str(state.get("fingerprint", ""))


def _image(spec: Any, source: Path) -> Any:
    """REPOSITORY:COMMIT (what `headway build --push` tags), or :latest for a folder that is
    not a clean git checkout (pulled at every start)."""
    from headway.builder.image import git_facts
    from headway.kube.objects import Image
    from headway.kube.source import repository

    facts = git_facts(source)
    clean = facts["revision"] and not facts["version"].endswith("-dirty")
    return Image(repository(spec), facts["revision"][:12] if clean else "latest")


def deploy(ctx: Any, *, dry_run: bool, force: bool) -> bool:
    if not on_kubernetes(ctx.config):
        return False
    from headway.cli import output

    spec = ctx.spec()  # with its checks (a --env that looks like a typo)
    rollout = _rollout(ctx.config, ctx.env, spec=spec)
    secrets, secrets_print = _secrets(spec, ctx.env, ctx.config)
    image = _image(spec, ctx.source(spec))
    if image.tag == "latest":
        output.err.print(f"note: {ctx.source(spec)} is not a clean git checkout: deploying "
                         f"{image.reference} (headway build --push pushes it)", markup=False)
    fingerprint = hashlib.sha256(json.dumps([
        image.reference, spec.model_dump(mode="json"), spec.environment(ctx.env),
        secrets_print], sort_keys=True, default=str).encode()).hexdigest()[:32]
    result = rollout.deploy(image, secrets, fingerprint=fingerprint, force=force, dry_run=dry_run)
    output.out.print(f"[bold]{spec.app.name}[/bold] ({ctx.env}): {result.message}",
                     markup=True, highlight=False)
    return True


def rollback(options: Any, release: int | None) -> bool:
    if not on_kubernetes(options.config):
        return False
    rollout = _rollout(options.config, options.env)
    result = rollout.rollback(release)
    click.echo(f"{rollout.app} ({options.env}): {result.message}")
    return True


def releases(ctx: Any, as_json: bool) -> bool:
    if not on_kubernetes(ctx.config):
        return False
    from headway.cli import output
    from headway.kube import view

    output.table(view.releases(_rollout(ctx.config, ctx.env)), as_json, RELEASE_COLUMNS)
    return True


def status(ctx: Any, as_json: bool, watch: bool) -> bool:
    if not on_kubernetes(ctx.config):
        return False
    from headway.cli import output
    from headway.kube import view

    if watch:
        raise ConfigError("status --watch is not built for runtime \"kubernetes\"",
                          hint="run headway status again, or kubectl get pods -w")
    data = view.status(_rollout(ctx.config, ctx.env))
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return True
    live = data["live"] if data["live"] is not None else "none"
    click.echo(f"{data['app']} ({data['env']}): context {data['context']}, namespace "
               f"{data['namespace']}, live release {live}")
    output.table(data["deployments"], False, ["deployment", "release", "live", "replicas",
                                              "available", "ready", "status"])
    output.table(data["pods"], False, ["pod", "release", "phase", "restarts"])
    return True


def logs(ctx: Any, *, follow: bool, process: str | None, lines: int | None, since: str | None,
         grep: str | None, release: int | None, as_json: bool) -> bool:
    if not on_kubernetes(ctx.config):
        return False
    from headway.kube import view

    if follow or since:
        raise ConfigError(f"logs {'--follow' if follow else '--since'} is not built for runtime "
                          "\"kubernetes\"", hint="kubectl logs -f -l app.kubernetes.io/name=APP")
    rows = view.logs(_rollout(ctx.config, ctx.env), process=process, release=release,
                     lines=lines or 20, grep=grep)
    for row in rows:
        click.echo(json.dumps(row) if as_json else f"{row['pod']} | {row['line']}")
    return True


def refuse(ctx: Any, command: str) -> None:
    """A command not built for runtime "kubernetes" says so, and what does it by hand."""
    if on_kubernetes(ctx.config):
        raise ConfigError(f"headway {command} is not built for runtime \"kubernetes\"",
                          hint="kubectl delete deployment,service,job,configmap,secret,ingress,"
                          "hpa,pdb,networkpolicy,serviceaccount -l app.kubernetes.io/name=APP "
                          "-n NAMESPACE (PersistentVolumeClaims hold [volumes] data)")


def signal(ctx: Any, what: str) -> bool:
    """`headway promote|abort` for a canary running on the cluster (from any machine)."""
    if not on_kubernetes(ctx.config):
        return False
    from headway.kube.canary import send_signal

    rollout = _rollout(ctx.config, ctx.env)
    number = send_signal(rollout, what)
    click.echo(f"{what} sent to the canary of release {number}")
    return True


def run(ctx: Any, argv: list[str], release: int | None) -> None:
    """`headway run -- CMD`: a Job in the cluster; exits with its code (returns when the app
    is not on runtime "kubernetes")."""
    if not on_kubernetes(ctx.config):
        return
    import sys

    from headway.kube import oneoff

    rollout = _rollout(ctx.config, ctx.env)
    if sys.stdin.isatty():
        _progress("no stdin on runtime \"kubernetes\" (a Job): for an interactive command, "
                  f"kubectl -n {rollout.cluster.namespace} exec -it "
                  f"deployment/{rollout.app}-web-rN -- CMD")
    code = oneoff.run(rollout, argv, release=release, output=click.echo, progress=_progress)
    sys.exit(code)


def refuse_data(ctx: Any, command: str) -> None:
    """`headway accessory|backup` on runtime "kubernetes": not built, says why."""
    if on_kubernetes(ctx.config):
        from headway.kube.oneoff import refusal

        raise ConfigError(**refusal(command))
