"""The one interface every runtime implements (process, podman, docker; Kubernetes later),
so the engine, the agent and the CLI never ask which runtime a release runs on. A release
records its runtime kind (its spec's "runtime"), an instance records it in its env
(HEADWAY_RUNTIME); `for_kind` gives the runtime that serves it. Nothing here runs anything."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from headway.spec.models import ProcessSpec
from headway.store import Instance, Release, Store

KIND_VAR = "HEADWAY_RUNTIME"
Output = Callable[[str], None]  # gets each line of a one-off command's output


class Runtime(Protocol):
    """Where a release's instances and one-off commands run."""

    kind: str

    def prepare(self, source: Path, files: list[Path], release: Release) -> None:
        """Build the release's artifact (folder and dependencies, or image) from the snapshot."""

    def start(self, release: Release, process: str, spec: ProcessSpec,
              env: dict[str, str]) -> Instance:
        """A new instance of `process`, recorded and asked to run; returns at once."""
        ...

    def stop(self, inst: Instance, *, remove: bool = True) -> None:
        """Ask the instance to stop (and be forgotten, with `remove`); returns at once."""

    def observe(self, inst_id: str) -> Instance | None:
        """The instance as it is now (state, pid, restarts), or None once it is gone."""
        ...

    def spawn_argv(self, inst: Instance) -> list[str]:
        """The command the agent runs to (re)start the instance: the one `start` recorded, or
        one that takes over what still runs of it (a container whose client was killed)."""
        ...

    def run_once(self, release: Release, argv: list[str], *, env: dict[str, str],
                 timeout: float | None = None, output: Output | None = None,
                 tty: bool = False, instance: Instance | None = None) -> int:
        """Run argv to its end in a new short-lived instance of the release (never in
        rotation), or inside the running `instance`; return its exit code. `env`: the
        release's [env] (its secrets are added inside); `output` gets each line (None: the
        caller's terminal, interactive); past `timeout` it is killed and RuntimeFailure is
        raised."""
        ...

    def remove(self, target: Release | Instance) -> None:
        """Clean up what is left of an instance whose process ended (e.g. its container), or
        of a release whose files are about to be deleted (e.g. its image)."""


def release_kind(release: Release) -> str:
    """"process", or the container engine's name ("podman") the release was built for."""
    return Path(json.loads(release.spec).get("runtime", "process")).name


def instance_kind(inst: Instance) -> str:
    return inst.env_vars.get(KIND_VAR, "process")


def for_kind(kind: str, store: Store) -> Runtime:
    """The runtime of releases and instances of `kind` on this host."""
    # imported here: the runtimes use this module's names
    from headway.runtime.container import ContainerRuntime
    from headway.runtime.process import ProcessRuntime

    if kind == "process":
        return ProcessRuntime(store)
    return ContainerRuntime(store, kind)
