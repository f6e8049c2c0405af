"""What the generated objects take from this host's store: each environment's image (its live
release's tag, or digest when recorded) and the names of the secrets set. Never decrypts
or reads a secret value, and never creates a store or starts the agent."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from headway.errors import ConfigError, HeadwayError
from headway.kube.kustomize import Environment
from headway.kube.objects import Image
from headway.spec.models import Spec

IMAGE_FILE = ".headway-image"  # what runtime.container writes into a release's folder
LIVE = ("active", "previous", "ready")


def environment_names(spec: Spec, only: str | None) -> list[str]:
    """production and every [env.NAME]; `only` must be one of them."""
    known = sorted({"production", *spec.environments()})
    if only is None:
        return known
    if only not in known:
        tables = ", ".join(f"[env.{n}]" for n in spec.environments()) or "none"
        raise ConfigError(f"--env {only}: no such environment in headway.toml (production, "
                          f"and one per [env.NAME] table: {tables})",
                          hint=f"add an [env.{only}] table (it may be empty), or pass one of: "
                          f"{', '.join(known)}")
    return [only]


def repository(spec: Spec) -> str:
    name = spec.registry.repository or spec.app.name
    return f"{spec.registry.server}/{name}" if spec.registry.server else f"localhost/headway/{name}"


def _store(home: Path | None):  # type: ignore[no-untyped-def]
    if home is None or not (home / "state.db").is_file():
        return None
    from headway.store import Store

    return Store(home)


def image(spec: Spec, env: str, home: Path | None) -> Image:
    """The newest built release of `env`: tag ENV-N (the name Headway pushes), its digest
    when the release recorded one; none built: latest."""
    repo = repository(spec)
    store = _store(home)
    if store is None:
        return Image(repo)
    with contextlib.suppress(HeadwayError):
        for release in store.releases(spec.app.name, env):
            if release.status not in LIVE:
                continue
            digest = None
            with contextlib.suppress(OSError, ValueError):
                digest = json.loads((Path(release.path) / IMAGE_FILE).read_text()).get("digest")
            return Image(repo, f"{env}-{release.number}", digest or None)
    return Image(repo)


def secret_names(spec: Spec, envs: list[str], home: Path | None) -> tuple[list[str], frozenset[str]]:
    """(every name, those set in some environments only): declared names ([app] secrets,
    [secrets]) and those set with `headway secrets set`, never Headway's own."""
    declared = {*spec.app.secrets, *spec.secrets}
    found: dict[str, int] = {}
    store = _store(home)
    if store is not None:
        from headway.secrets import Vault, load_key

        with contextlib.suppress(HeadwayError, OSError, ValueError):
            vault = Vault(store, load_key(store.home, create=False))
            for env in envs:
                for name in vault.names(spec.app.name, env):
                    found[name] = found.get(name, 0) + 1
    derived = {n for acc in spec.accessories.values() for n in (acc.env_name, *acc.env)}
    own = {spec.registry.password_secret} | derived
    names = sorted((declared | set(found)) - own)
    optional = frozenset(n for n in names if n not in declared and found.get(n, 0) < len(envs))
    return names, optional


def environments(spec: Spec, names: list[str], home: Path | None) -> list[Environment]:
    namespace = spec.kubernetes.namespace
    return [Environment(name, image(spec, name, home), namespace or f"{spec.app.name}-{name}",
                        spec.environment(name)) for name in names]
