"""The container runtime, on podman or docker (one runtime; where their CLIs differ is the
table in engines.py). A release is an image built from its snapshot (and pushed when a
registry is configured); an instance is `podman run` / `docker run` in the foreground, which
the agent supervises like any process (restarts with backoff, SIGTERM passed on to the
container, adopted after an agent restart), so every guarantee of the process runtime holds
unchanged.

Each container is labelled with app, release and process, published on a loopback port (or,
when the app has accessories, on the host's network to reach them on 127.0.0.1), runs
as the image's non-root user with every capability dropped, and gets its secrets as files
(never as `-e` or an env file, which `inspect` shows): podman's engine secrets; for docker,
whose secrets need a swarm, files Headway writes on a tmpfs (/dev/shm), readable by the
image's user only, bind-mounted read-only at the same place. A small /bin/sh entrypoint
exports them before it execs the command. A one-off command (the release phase,
`headway run`) is a `podman run --rm` of the same image with the same variables, secrets,
network and volumes (bind mounts of folders outside every release, owned by the image's
user); `headway exec` is `podman exec` in a running instance. The argv is `run_argv`'s, pure.
Never starts an engine or its daemon; never puts a secret in an argv, a `-e`, an env file or
the engine client's environment."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from headway.builder import image
from headway.builder.containerfile import PORT
from headway.errors import ConfigError, RuntimeFailure
from headway.runtime.artifact import materialize
from headway.runtime.base import KIND_VAR, Output
from headway.runtime.engines import Engine, client, of
from headway.runtime.process import (
    ProcessRuntime,
    ensure_volumes,
    expand,
    pinned_secrets,
    release_env,
    run_command,
)
from headway.secrets import load_key, reveal_env
from headway.spec.models import BuildSpec, ProcessSpec, Spec
from headway.store import Instance, Release, Store

SECRETS_SCRIPT = ('for f in /run/secrets/headway-*; do [ -f "$f" ] && n="${f##*/}" && '
                  'export "${n#headway-}=$(cat "$f")"; done; exec "$@"')
EXPORT = ["/bin/sh", "-c", SECRETS_SCRIPT, "headway-secrets"]  # then the command
EXPORT_SECRETS = json.dumps(EXPORT)  # podman's --entrypoint takes it whole; docker's one word
SECRET_FILES = Path("/dev/shm/headway")  # docker's secret files: a tmpfs, never a disk
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


@dataclass
class Box:
    """One container to run: everything its `podman run` argv depends on."""

    name: str
    labels: dict[str, str]
    image: str
    command: list[str]
    env: dict[str, str]  # variables inside (never secrets)
    secrets: dict[str, str] = field(default_factory=dict)  # NAME -> engine secret's name
    mounts: dict[str, str] = field(default_factory=dict)  # host folder -> path inside
    host_network: bool = False
    publish: int | None = None  # loopback port -> PORT inside
    spec: ProcessSpec | None = None  # an instance's limits; None: a one-off command
    interactive: bool = False
    tty: bool = False


def run_argv(binary: str | list[str], box: Box) -> list[str]:
    """`podman run` / `docker run` of a box, in the foreground, removed when it ends. Pure.
    `binary`: the engine's binary, or its client argv (engines.client)."""
    cli = [binary] if isinstance(binary, str) else list(binary)
    engine = of(cli[0])
    argv = [*cli, "run", "--rm"]
    if box.spec is not None and engine.replace:
        argv.append("--replace")
    argv += ["--name", box.name, "--init"]
    argv += ["-i"] * box.interactive + ["-t"] * box.tty
    for key, value in box.labels.items():
        argv += ["--label", f"{key}={value}"]
    argv += ["--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    if box.spec is not None:
        argv += ["--stop-timeout", str(int(box.spec.stop_timeout))]
    if box.host_network:
        argv += ["--network", "host"]
    elif box.publish:
        argv += ["-p", f"127.0.0.1:{box.publish}:{PORT}"]
    if box.spec is not None and box.spec.memory:
        argv += ["--memory", box.spec.memory]
    if box.spec is not None and box.spec.cpus:
        argv += ["--cpus", str(box.spec.cpus)]
    if box.spec is not None and box.spec.read_only:  # /tmp, /run stay writable
        argv.append("--read-only")
        for folder in engine.read_only_tmpfs:
            argv += ["--tmpfs", folder]
    for host, inside in sorted(box.mounts.items()):  # podman's :U: owned by the container's user
        argv += ["-v", f"{host}:{inside}:U" if engine.chown_mounts else f"{host}:{inside}"]
    for key, value in sorted(box.env.items()):
        argv += ["-e", f"{key}={value}"]
    argv += _secret_args(engine, box.secrets)
    if box.secrets and engine.engine_secrets:
        return [*argv, "--entrypoint", EXPORT_SECRETS, box.image, *box.command]
    if box.secrets:  # docker's --entrypoint is one word: the rest goes before the command
        return [*argv, "--entrypoint", EXPORT[0], box.image, *EXPORT[1:], *box.command]
    return [*argv, box.image, *box.command]


def _secret_args(engine: Engine, secrets: dict[str, str]) -> list[str]:
    """Each secret at /run/secrets/headway-NAME: an engine secret (podman), or a host file
    bind-mounted read-only (docker; --mount fails when the file is missing, -v would make a
    folder of it)."""
    argv = []
    for name, source in sorted(secrets.items()):
        if engine.engine_secrets:
            argv += ["--secret", f"{source},target=headway-{name}"]
        else:
            where = f"/run/secrets/headway-{name}"
            argv += ["--mount", f"type=bind,source={source},target={where},readonly"]
    return argv


def labels(home: Path, release: Release, process: str) -> dict[str, str]:
    return {"headway.home": str(home), "headway.app": release.app, "headway.env": release.env,
            "headway.release": str(release.number), "headway.process": process}


class ContainerRuntime:
    def __init__(self, store: Store, binary: str) -> None:
        self.store = store
        self.binary = shutil.which(binary) or binary
        self.kind = Path(binary).name
        self.engine = of(self.kind)
        self.cli = client(self.binary)  # docker: with the daemon this command talks to
        self.processes = ProcessRuntime(store)  # records instances; the agent supervises them

    def prepare(self, source: Path, files: list[Path], release: Release) -> None:
        spec = Spec.of_record(release.spec)
        dest = Path(release.path)
        materialize(source, files, dest)
        if spec.registry.server:
            image.reachable(spec.registry)
        found = image.prepare_context(source, dest, spec)
        revision = image.git_facts(source)["revision"][:12]
        tags = [f"{release.env}-{release.number}", *([revision] if revision else []), "latest"]
        log = self.store.home / "apps" / release.app / release.env / "logs" / \
            f"build-{release.number}.log"
        secrets = reveal_env(self.store, release.app, release.env,
                             json.loads(release.spec)["secrets"].get("version", 0))
        from headway.fleet.remote import pulled_image  # a fleet host: the image pulled by digest
        built = pulled_image(self.binary, repo=repository(spec), tags=tags) or \
            image.pushed_for_commit(self.binary, source, repo=repository(spec), tags=tags,
                                    registry=spec.registry, secrets=secrets)
        if built is None:
            built = image.build(self.binary, dest, found, repo=repository(spec), tags=tags,
                                title=spec.app.name, source=source,
                                platforms=spec.build.platforms, log=log)
            if spec.registry.server:
                image.publish(self.binary, built.names, spec.registry, secrets)
        facts: dict[str, object] = {"id": built.image, "names": built.names, "engine": self.binary,
                                    "workdir": self._workdir(built.image)}
        if not self.engine.chown_mounts:  # who must own its volumes and secret files
            facts["user"] = self._user(built.image)
        (dest / IMAGE_FILE).write_text(json.dumps(facts))

    def start(self, release: Release, process: str, spec: ProcessSpec,
              env: dict[str, str]) -> Instance:
        inst = self.processes.new_instance(release, process, spec, env)
        inst.env_vars[KIND_VAR] = self.kind
        box = self._box(release, inst.id, process, inst.env_vars, expose=inst.port)
        box.spec, box.publish = spec, None if box.host_network else (inst.port or None)
        box.command = expand(spec.command, box.env)
        inst.argv = run_argv(self.cli, box)
        inst.secrets = 0  # in the container through files, not in the engine client's env
        Path(inst.log).parent.mkdir(parents=True, exist_ok=True)
        self.store.add_instance(inst)
        return inst

    def stop(self, inst: Instance, *, remove: bool = True) -> None:
        self.processes.stop(inst, remove=remove)  # the agent signals `podman run`

    def observe(self, inst_id: str) -> Instance | None:
        return self.store.instance(inst_id)

    def spawn_argv(self, inst: Instance) -> list[str]:
        """`podman run --replace` would kill a container that outlived its killed `podman run`
        while it still serves requests; attaching to it takes it over (its output, its exit,
        signals forwarded) with no request lost. Docker has no --replace: a container of the
        instance that no longer runs is removed first. Its secret files (on a tmpfs) are
        written again when a reboot took them."""
        cli = _client_of(inst)
        if not self.engine.engine_secrets:
            release = self.store.release(inst.app, inst.env, inst.release)
            if release is not None:
                self._secrets(release)
        if not inst.restarts:  # a first start: no container of it exists yet
            return inst.argv
        state = subprocess.run([*cli, "container", "inspect", "--format",
                                "{{.State.Running}}", inst.id],
                               capture_output=True, text=True, check=False).stdout.strip()
        if state == "true":
            return [*cli, "attach", "--no-stdin", inst.id]
        if not self.engine.replace and state:
            self._kill(inst.id, cli)
        return inst.argv

    def run_once(self, release: Release, argv: list[str], *, env: dict[str, str],
                 timeout: float | None = None, output: Output | None = None,
                 tty: bool = False, instance: Instance | None = None) -> int:
        """`podman run --rm` of the release's image (or `podman exec` in `instance`), with
        its env, secrets, network and volumes."""
        interactive = output is None
        if instance is not None:
            wrap = EXPORT if pinned_secrets(self.store, release) else []
            cmd = [*_client_of(instance), "exec", *["-i"] * interactive, *["-t"] * tty,
                   instance.id, *wrap, *argv]
            return run_command(cmd, env=_client_env(), timeout=timeout, output=output)
        name = f"headway-{release.app}-{release.env}-run-{secrets.token_hex(4)}"
        box = self._box(release, name, "run", release_env(release, env), expose=0)
        box.command, box.interactive, box.tty = argv, interactive, tty
        return run_command(run_argv(self.cli, box), env=_client_env(), timeout=timeout,
                           output=output, cleanup=lambda: self._kill(name))

    def remove(self, target: Release | Instance) -> None:
        """An instance: its container, which a SIGKILLed `podman run --rm` leaves behind. A
        pruned release: its image, untagged where a tag still names it (`latest` or a git sha
        may have moved on to a newer one); the image goes with its last tag."""
        if isinstance(target, Instance):
            self._kill(target.id, _client_of(target))
            return
        path = Path(target.path) / IMAGE_FILE
        if path.exists():
            built = json.loads(path.read_text())
            image.remove(self.binary, built["names"], only=built["id"])

    def _box(self, release: Release, name: str, process: str, env: dict[str, str], *,
             expose: int) -> Box:
        """The container's parts common to instances and one-off commands: image, labels,
        variables, secrets, network and volumes."""
        built = json.loads((Path(release.path) / IMAGE_FILE).read_text())
        # Accessories listen on the host's loopback, and their URLs say 127.0.0.1: an app that
        # has any shares the host's network (binding $PORT on 127.0.0.1 itself); one that has
        # none gets its own network, published on a loopback port.
        shared = bool(json.loads(release.spec)["spec"].get("accessories"))
        inside = {k: v for k, v in env.items() if k not in {"PATH", "VIRTUAL_ENV", KIND_VAR}}
        if not shared:
            inside |= {"HOST": "0.0.0.0", "PORT": str(PORT)} if expose else {"HOST": "0.0.0.0"}
        workdir = built.get("workdir") or self._workdir(built["id"])
        volumes = ensure_volumes(self.store, release)
        if not self.engine.chown_mounts:  # what podman's :U does
            for folder in volumes.values():
                _chown_tree(folder, self._owner(release))
        mounts = {str(folder): f"{workdir.rstrip('/')}/{where}"
                  for where, folder in volumes.items()}
        # docker's ids say sha256:; the bare digest, as podman's, names the image in argv
        return Box(name=name, labels=labels(self.store.home, release, process),
                   image=built["id"].removeprefix("sha256:"), command=[], env=inside,
                   secrets=self._secrets(release), mounts=mounts, host_network=shared)

    def _workdir(self, image_id: str) -> str:
        done = subprocess.run([*self.cli, "image", "inspect", "--format",
                               "{{.Config.WorkingDir}}", image_id],
                              capture_output=True, text=True, check=False)
        return done.stdout.strip() or "/"

    def _user(self, image_id: str) -> list[int]:
        """The uid and gid the image runs as: its USER when numeric, else asked of the image
        (a name such as `node` is the image's own /etc/passwd's to resolve)."""
        done = subprocess.run([*self.cli, "image", "inspect", "--format", "{{.Config.User}}",
                               image_id], capture_output=True, text=True, check=False)
        user, _, group = done.stdout.strip().partition(":")
        if not user or user.isdigit() and (not group or group.isdigit()):
            uid = int(user or 0)
            return [uid, int(group) if group else uid]
        asked = subprocess.run([*self.cli, "run", "--rm", "--entrypoint", "/bin/sh", image_id,
                                "-c", "id -u; id -g"], capture_output=True, text=True,
                               check=False, timeout=120)
        ids = asked.stdout.split()
        if asked.returncode != 0 or len(ids) != 2:
            raise RuntimeFailure(f"cannot tell which uid the image's user {user!r} is",
                                 hint=f"`id -u; id -g` in the image said: "
                                 f"{asked.stderr.strip()[-300:]}; use a numeric USER")
        return [int(ids[0]), int(ids[1])]

    def _owner(self, release: Release) -> tuple[int, int]:
        built = json.loads((Path(release.path) / IMAGE_FILE).read_text())
        uid, gid = built.get("user") or self._user(built["id"])
        return int(uid), int(gid)

    def _kill(self, name: str, cli: list[str] | None = None) -> None:
        subprocess.run([*(cli or self.cli), *self.engine.force_remove, name],
                       capture_output=True, check=False)

    def _secrets(self, release: Release) -> dict[str, str]:
        """The pinned secrets, each named by a keyed hash of its value (so a new value is a
        new secret, and the name reveals nothing): podman's engine secrets, or (docker) files
        on a tmpfs that only the image's user may read. Name -> engine secret or file."""
        values = pinned_secrets(self.store, release)
        key = load_key(self.store.home, create=False) if values else b""
        out = {}
        for name, value in values.items():
            mac = hmac.new(key, f"{name}\0{value}".encode(), "sha256").hexdigest()[:32]
            if self.engine.engine_secrets:
                out[name] = self._engine_secret(name, value, mac, release)
            else:
                folder = secret_folder(self.store.home, release.app, release.env)
                owner = self._owner(release)  # releases whose images run as others: a file each
                out[name] = str(_secret_file(folder / f"{mac}-{owner[0]}", value, owner))
        return out

    def _engine_secret(self, name: str, value: str, mac: str, release: Release) -> str:
        engine_name = f"{secret_prefix(self.store.home, release.app, release.env)}{mac}"
        exists = subprocess.run([*self.cli, "secret", "inspect", engine_name],
                                capture_output=True, check=False).returncode == 0
        if not exists:
            made = subprocess.run([*self.cli, "secret", "create", engine_name, "-"],
                                  input=value.encode(), capture_output=True, check=False)
            if made.returncode != 0:
                raise RuntimeFailure(f"{self.kind} could not store secret {name}: "
                                     f"{made.stderr.decode(errors='replace').strip()}",
                                     hint=f"`{self.kind} secret ls` lists what it holds")
        return engine_name


def _client_of(inst: Instance) -> list[str]:
    """The engine client an instance was started with (docker: its daemon too)."""
    return inst.argv[:inst.argv.index("run")] if "run" in inst.argv else inst.argv[:1]


def _client_env() -> dict[str, str]:
    """podman's own environment: the caller's, without anything of the app's."""
    return dict(os.environ)


def _secret_file(path: Path, value: str, owner: tuple[int, int]) -> Path:
    """A secret's file, readable by `owner` only (the image's user; no capability lets any
    other user of the container read it), written whole or not at all."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    try:
        os.fchown(fd, *owner)
        os.write(fd, value.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def _chown_tree(folder: Path, owner: tuple[int, int]) -> None:
    for root, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            os.chown(Path(root) / name, *owner, follow_symlinks=False)
    os.chown(folder, *owner)


def secret_prefix(home: Path, app: str, env: str) -> str:
    """Engine secrets are per host state folder too: two homes (two test runs, two users)
    deploying the same app never remove each other's. A hash, since podman allows 64
    characters in all and app and environment names may take 40 each."""
    tag = hashlib.sha256(f"{home}\0{app}\0{env}".encode()).hexdigest()[:16]
    return f"headway-{tag}-"


def secret_folder(home: Path, app: str, env: str) -> Path:
    """Where docker's secret files of an app's environment are (a tmpfs: gone at reboot, when
    the agent's next start of each instance writes them again)."""
    return SECRET_FILES / secret_prefix(home, app, env).rstrip("-")


def remove_secrets(home: Path, app: str, env: str) -> None:
    """The engine secrets (and docker's secret files) of an app's environment, when it is
    destroyed."""
    shutil.rmtree(secret_folder(home, app, env), ignore_errors=True)
    binary = shutil.which("podman")
    if not binary:
        return
    names = subprocess.run([binary, "secret", "ls", "--format", "{{.Name}}"],
                           capture_output=True, text=True, check=False).stdout.split()
    mine = [n for n in names if n.startswith(secret_prefix(home, app, env))]
    if mine:
        subprocess.run([binary, "secret", "rm", *mine], capture_output=True, check=False)
