"""Container releases of a fleet ([servers] with runtime = "podman" or "docker"): the image is
built once on the control machine (or, when this very snapshot was pushed before, pulled back
from [registry] instead of built again), pushed there, and named by its digest
(`REPO@sha256:...`), which every host pulls before its own health-gated deploy of it.
Never puts the registry password in argv or a log line: the engine gets it on stdin
(`login --password-stdin`), the hosts on ssh's stdin."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from headway.errors import ConfigError, RuntimeFailure
from headway.spec.models import Spec

if TYPE_CHECKING:
    from headway.fleet.fleet import Fleet

CONTAINER = ("podman", "docker")
DIGEST_TAG = "fleet-"  # REPO:fleet-<snapshot sha>: the image of one snapshot, built once


def is_container(spec: Spec) -> bool:
    return spec.app.runtime in CONTAINER


def check(spec: Spec, config: Path) -> None:
    """Refuse, naming the keys, what a fleet cannot deploy: a runtime the hosts would each pick
    for themselves, or a container runtime without a registry the hosts can pull from."""
    runtime = spec.app.runtime
    if runtime not in ("process", *CONTAINER):
        raise ConfigError(f"{config}: app.runtime = {runtime!r} with [servers]: every host must "
                          "run the same runtime", hint='set runtime = "process", "podman" or '
                          '"docker"')
    if runtime in CONTAINER and not spec.registry.server:
        raise ConfigError(
            f"{config}: app.runtime = {runtime!r} with [servers] needs [registry] server: the "
            "image is built once here, pushed there, and every host pulls it by digest",
            hint='add [registry] server = "registry.example.com" (and username, with the '
            "password in the secret REGISTRY_PASSWORD or $HEADWAY_REGISTRY_PASSWORD), one "
            "that this machine and every host can reach")
    if runtime in CONTAINER and spec.registry.verify:
        raise ConfigError(f"{config}: registry.verify with [servers] is not supported in this "
                          "version (a signature is checked where it was made)",
                          hint="remove registry.verify; hosts still pull by digest")


def check_hosts(fleet: Fleet) -> None:
    """A podman release needs podman on every host (probed): refused before any change."""
    if fleet.spec.app.runtime != "podman":
        return
    for host in fleet.hosts:
        if not fleet.info[host.name].get("podman"):
            raise ConfigError(f"{host.name}: lacks podman (app.runtime = \"podman\")",
                              hint="install it there (apt-get install podman), then "
                              "`headway servers check`")


def registry_password(fleet: Fleet) -> str | None:
    """The registry password: the app's secret [registry] password_secret on this machine,
    else the environment variable [registry] password_env."""
    from headway.secrets import Vault, load_key
    from headway.store import Store

    registry = fleet.spec.registry
    store = Store(fleet.home)
    vault = Vault(store, load_key(store.home))
    if registry.password_secret in vault.names(fleet.app, fleet.env):
        return vault.values(fleet.app, fleet.env)[registry.password_secret].reveal()
    return os.environ.get(registry.password_env) or None


def pull_input(fleet: Fleet) -> str:
    """What a host's `remote pull` reads on stdin: the registry login, password included."""
    registry = fleet.spec.registry
    return json.dumps({"server": registry.server, "username": registry.username,
                       "password": registry_password(fleet) if registry.username else None,
                       "tls_verify": registry.tls_verify})


def build_and_push(fleet: Fleet, source: Path, snapshot: str) -> str:
    """The image of this snapshot in [registry], built here unless it is there already;
    its digest reference `REPO@sha256:...`."""
    from headway.builder import image
    from headway.runtime.container import repository
    from headway.secrets import Secret

    spec = fleet.spec
    binary = image.engine_binary(spec.app.runtime)
    registry, repo = spec.registry, repository(spec)
    image.reachable(registry)
    password = registry_password(fleet)
    image.login(binary, registry, Secret(password) if password else None)
    name = f"{repo}:{DIGEST_TAG}{snapshot[:20]}"
    if _pull(binary, name, tls_verify=registry.tls_verify):
        fleet.progress(f"image {name} is in the registry already: not built again",
                       step="image")
    else:
        fleet.progress(f"building image {name}", step="image")
        built = _build(fleet, source, binary, repo, name.rsplit(":", 1)[1])
        fleet.progress(f"image built in {built:.1f}s; pushing it to {registry.server}",
                       step="image")
        secrets = {registry.password_secret: password} if password else {}
        image.publish(binary, [name], registry, secrets)
    return f"{repo}@{digest(binary, name, tls_verify=registry.tls_verify)}"


def _build(fleet: Fleet, source: Path, binary: str, repo: str, tag: str) -> float:
    from headway.builder import image
    from headway.runtime.artifact import materialize, snapshot_files

    log = fleet.home / "apps" / fleet.app / fleet.env / "logs" / "fleet-build.log"
    with tempfile.TemporaryDirectory(prefix="headway-fleet-image-") as tmp:
        context = Path(tmp) / "context"
        materialize(source, snapshot_files(source, fleet.home), context)
        found = image.prepare_context(source, context, fleet.spec)
        built = image.build(binary, context, found, repo=repo, tags=[tag],
                            title=fleet.app, source=source,
                            platforms=fleet.spec.build.platforms, log=log)
    return built.seconds


def _tls(binary: str, tls_verify: bool) -> list[str]:
    from headway.runtime import engines

    return ["--tls-verify=false"] if not tls_verify and engines.of(binary).tls_verify_flag \
        else []


def _pull(binary: str, name: str, *, tls_verify: bool) -> bool:
    return subprocess.run([binary, "pull", "--quiet", *_tls(binary, tls_verify), name],
                          capture_output=True, timeout=1800, check=False).returncode == 0


def digest(binary: str, name: str, *, tls_verify: bool) -> str:
    """The digest `name` has in its registry (`sha256:...`), as the push reports it (podman's
    --digestfile, docker's `digest:` line); pushing what is there already sends no layer."""
    from headway.runtime import engines

    with tempfile.TemporaryDirectory(prefix="headway-digest-") as tmp:
        file = Path(tmp) / "digest"
        podman = engines.of(binary).name == "podman"
        argv = [binary, "push", *_tls(binary, tls_verify),
                *(["--digestfile", str(file)] if podman else []), name]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=1800, check=False)
        text = file.read_text().strip() if podman and file.exists() else \
            next((w for w in done.stdout.split() if w.startswith("sha256:")), "")
    if done.returncode != 0 or not text.startswith("sha256:"):
        raise RuntimeFailure(f"cannot tell the registry digest of {name}",
                             hint=(done.stderr or done.stdout).strip()[-500:] or None)
    return text
