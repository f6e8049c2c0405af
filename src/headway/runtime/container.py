"""The podman runtime. A release is an image built from its snapshot (and pushed when
a registry is configured); an instance is `podman run` in the foreground, which the agent
supervises like any process (restarts with backoff, SIGTERM passed on to the container, adopted
after an agent restart), so every guarantee of the process runtime holds unchanged.

Each container is labelled with app, release and process, published on a loopback port (or,
when the app has accessories, on the host's network to reach them on 127.0.0.1), runs
as the image's non-root user with every capability dropped, and gets its secrets as files
from the engine's secret store (never as `-e`, which `podman inspect` shows): a small /bin/sh
entrypoint exports them before it execs the command."""

from __future__ import annotations

import hmac
import json
import shutil
import subprocess
from pathlib import Path

from headway.builder import image
from headway.builder.containerfile import PORT
from headway.errors import ConfigError, RuntimeFailure
from headway.runtime.artifact import materialize
from headway.runtime.process import ProcessRuntime, expand
from headway.secrets import load_key, reveal_env
from headway.spec.models import BuildSpec, ProcessSpec, Spec
from headway.store import Instance, Release, Store

EXPORT_SECRETS = json.dumps([  # podman mounts each at /run/secrets/headway-NAME
    "/bin/sh", "-c", ('for f in /run/secrets/headway-*; do [ -f "$f" ] && n="${f##*/}" && '
                      'export "${n#headway-}=$(cat "$f")"; done; exec "$@"'), "headway-secrets"])
IMAGE_FILE = ".headway-image"


def resolve(runtime: str, build: BuildSpec) -> str:
    """"process", or the container engine's binary that the release's instances run with."""
    if runtime == "process":
        return "process"
    if runtime == "kubernetes":
        raise ConfigError('app.runtime: "kubernetes" is not available in this version',
                          hint='use "podman", "docker" or "process"')
    try:
        return image.engine_binary(build.engine if runtime == "auto" else runtime)
    except RuntimeFailure:
        if runtime == "auto":
            return "process"
        raise


def repository(spec: Spec) -> str:
    name = spec.registry.repository or spec.app.name
    return f"{spec.registry.server}/{name}" if spec.registry.server else f"localhost/headway/{name}"


class ContainerRuntime(ProcessRuntime):
    def __init__(self, store: Store, binary: str) -> None:
        super().__init__(store)
        self.binary = binary

    def prepare(self, source: Path, files: list[Path], release: Release) -> None:
        spec = Spec.model_validate(json.loads(release.spec)["spec"])
        dest = Path(release.path)
        materialize(source, files, dest)
        if spec.registry.server:
            image.reachable(spec.registry)
        found = image.prepare_context(source, dest, spec)
        revision = image.git_facts(source)["revision"][:12]
        tags = [f"{release.env}-{release.number}", *([revision] if revision else []), "latest"]
        log = self.store.home / "apps" / release.app / release.env / "logs" / \
            f"build-{release.number}.log"
        built = image.build(self.binary, dest, found, repo=repository(spec), tags=tags,
                            title=spec.app.name, source=source, platforms=spec.build.platforms,
                            log=log)
        if spec.registry.server:
            image.publish(self.binary, built.names, spec.registry, reveal_env(
                self.store, release.app, release.env,
                json.loads(release.spec)["secrets"].get("version", 0)))
        (dest / IMAGE_FILE).write_text(json.dumps({"id": built.image, "names": built.names}))

    def new_instance(self, release: Release, process: str, spec: ProcessSpec,
                     env: dict[str, str]) -> Instance:
        inst = super().new_instance(release, process, spec, env)
        built = json.loads((Path(release.path) / IMAGE_FILE).read_text())
        # Accessories listen on the host's loopback, and their URLs say 127.0.0.1: an app that
        # has any shares the host's network (binding $PORT on 127.0.0.1 itself); one that has
        # none gets its own network, published on a loopback port.
        shared = bool(json.loads(release.spec)["spec"].get("accessories"))
        inside = {k: v for k, v in inst.env_vars.items() if k not in {"PATH", "VIRTUAL_ENV"}}
        if not shared:
            inside |= {"HOST": "0.0.0.0", "PORT": str(PORT)} if inst.port else {"HOST": "0.0.0.0"}
        argv = [self.binary, "run", "--rm", "--replace", "--name", inst.id, "--init",
                "--label", f"headway.home={self.store.home}",
                "--label", f"headway.app={release.app}", "--label", f"headway.env={release.env}",
                "--label", f"headway.release={release.number}",
                "--label", f"headway.process={process}",
                "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                "--stop-timeout", str(int(spec.stop_timeout))]
        if shared:
            argv += ["--network", "host"]
        elif inst.port:
            argv += ["-p", f"127.0.0.1:{inst.port}:{PORT}"]
        if spec.memory:
            argv += ["--memory", spec.memory]
        if spec.cpus:
            argv += ["--cpus", str(spec.cpus)]
        if spec.read_only:  # /tmp, /run stay writable; secrets need a place to be mounted
            argv += ["--read-only", "--tmpfs", "/run/secrets"]
        for key, value in sorted(inside.items()):
            argv += ["-e", f"{key}={value}"]
        names = self._secrets(release, inst.secrets)
        for name, engine_name in names.items():
            argv += ["--secret", f"{engine_name},target=headway-{name}"]
        if names:
            argv += ["--entrypoint", EXPORT_SECRETS]
        inst.argv = [*argv, built["id"], *expand(spec.command, inside)]
        inst.secrets = 0  # in the container through the engine, not in podman's environment
        return inst

    def _secrets(self, release: Release, version: int) -> dict[str, str]:
        """The pinned secrets as engine secrets, named by a keyed hash of the value (so a new
        value is a new engine secret, and the name reveals nothing); name -> engine's name."""
        values = reveal_env(self.store, release.app, release.env, version)
        key = load_key(self.store.home, create=False) if values else b""
        out = {}
        for name, value in values.items():
            mac = hmac.new(key, f"{name}\0{value}".encode(), "sha256").hexdigest()[:16]
            engine_name = f"headway-{release.app}-{release.env}-{name}-{mac}"
            exists = subprocess.run([self.binary, "secret", "inspect", engine_name],
                                    capture_output=True, check=False).returncode == 0
            if not exists:
                subprocess.run([self.binary, "secret", "create", engine_name, "-"],
                               input=value.encode(), capture_output=True, check=True)
            out[name] = engine_name
        return out

    def forget(self, release: Release) -> None:
        """A pruned release: untag its image where a tag still names it (`latest` or a git sha
        may have moved on to a newer one); the image goes with its last tag."""
        path = Path(release.path) / IMAGE_FILE
        if path.exists():
            built = json.loads(path.read_text())
            image.remove(self.binary, built["names"], only=built["id"])


def remove_secrets(app: str, env: str) -> None:
    """The engine secrets of an app's environment, when it is destroyed."""
    binary = shutil.which("podman")
    if not binary:
        return
    names = subprocess.run([binary, "secret", "ls", "--format", "{{.Name}}"],
                           capture_output=True, text=True, check=False).stdout.split()
    mine = [n for n in names if n.startswith(f"headway-{app}-{env}-")]
    if mine:
        subprocess.run([binary, "secret", "rm", *mine], capture_output=True, check=False)
