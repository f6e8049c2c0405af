"""The container engines Headway drives (podman, docker) side by side: one small table of
where their CLIs differ in the commands Headway runs, and which engine answers on this host.
Everything else (run, exec, attach, inspect formats, build, push, rmi) is the same argv for
both. Never starts an engine or its daemon: a Docker daemon that does not answer is the
user's to start, and the error says where Headway looked."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from headway.errors import RuntimeFailure

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


@dataclass(frozen=True)
class Engine:
    name: str
    replace: bool  # `run --replace` removes a leftover container of the same name
    engine_secrets: bool  # `run --secret` without a swarm; else Headway mounts files itself
    chown_mounts: bool  # `-v SRC:DST:U` hands a bind mount to the container's user
    read_only_tmpfs: tuple[str, ...]  # what stays writable under `--read-only`
    force_remove: tuple[str, ...]  # remove a container now, quiet when it is gone already
    build_flags: tuple[str, ...]
    build_env: dict[str, str] = field(default_factory=dict)
    tls_verify_flag: bool = True  # login/push take --tls-verify=false


PODMAN = Engine("podman", replace=True, engine_secrets=True, chown_mounts=True,
                # podman keeps /tmp, /run writable itself; engine secrets need a place too
                read_only_tmpfs=("/run/secrets",),
                force_remove=("rm", "-f", "-t", "0", "--ignore"), build_flags=("--layers",))
DOCKER = Engine("docker", replace=False, engine_secrets=False, chown_mounts=False,
                read_only_tmpfs=("/tmp", "/run"), force_remove=("rm", "-f"),
                # BuildKit: the generated Containerfile's cache mounts; plain progress lines
                build_flags=("--progress=plain",), build_env={"DOCKER_BUILDKIT": "1"},
                # docker has no such flag: plain-HTTP registries are the daemon's setting
                # (insecure-registries; 127.0.0.0/8 is insecure by default)
                tls_verify_flag=False)


def of(binary: str) -> Engine:
    """The engine a binary (name or path) is."""
    return DOCKER if Path(binary).name.startswith("docker") else PODMAN


def client(binary: str) -> list[str]:
    """The argv prefix that reaches the engine: for docker, the daemon this command's
    environment names (DOCKER_HOST), recorded in each instance's argv so the agent reaches
    the same daemon whatever its own environment says."""
    host = os.environ.get("DOCKER_HOST")
    return [binary, "--host", host] if of(binary) is DOCKER and host else [binary]


def find(choice: str = "auto") -> str:
    """The engine binary to build and run with: podman when it answers; "auto" then tries
    docker, whose daemon must answer. RuntimeFailure (with what to do) when none does."""
    failures = []
    for name in ("podman", "docker") if choice == "auto" else (choice,):
        path = shutil.which(name)
        problem = _problem(name, path)
        if problem is None and path:
            return path
        failures.append(problem)
    if choice == "docker":
        raise RuntimeFailure(failures[0] or "docker does not answer", hint=docker_hint())
    if choice == "podman":
        raise RuntimeFailure(f"no container engine works here ({failures[0]})",
                             hint='install podman, or use runtime = "process"')
    raise RuntimeFailure(f"no container engine works here ({'; '.join(map(str, failures))})",
                         hint=f'install podman, or start Docker ({docker_hint()}), or use '
                         'runtime = "process"')


def _problem(name: str, path: str | None) -> str | None:
    """Why the engine cannot be used, or None when it answers."""
    if not path:
        return f"{name} is not installed"
    probe = [path, "info"] if name == "podman" else \
        [*client(path), "version", "--format", "{{.Server.Version}}"]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=20, check=False)
    except subprocess.TimeoutExpired:
        done = None
    if done is not None and done.returncode == 0:
        return None
    if name == "podman":
        return "podman is missing or does not answer `podman info`"
    said = (done.stderr.strip().splitlines() or [""])[-1] if done else "no answer in 20 s"
    return (f"the Docker daemon does not answer at {docker_socket()}"
            + (f": {said}" if said else ""))


def docker_socket() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


def docker_hint() -> str:
    return ("Headway never starts the Docker daemon: start it (`systemctl start docker`, or "
            "`dockerd &` where there is no systemd), make sure you may use its socket, and set "
            f"DOCKER_HOST when it listens elsewhere than {DEFAULT_DOCKER_HOST}")


def ignore_file(binary: str, context: Path) -> None:
    """Docker reads .dockerignore only: a context with just a .containerignore (the generated
    one keeps .git, .env* and keys out of every layer) gets it under that name too."""
    ours, theirs = context / ".containerignore", context / ".dockerignore"
    if of(binary) is DOCKER and ours.is_file() and not theirs.exists():
        shutil.copyfile(ours, theirs)
