"""A runtime for the engine's unit tests: instances are store rows marked running at once
(or crashed, for the releases in `crash`), one-off commands are recorded and answer with
`exit_code` and `lines`. Starts nothing; never what proves a feature works."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from headway.runtime.base import Output
from headway.runtime.process import ProcessRuntime
from headway.spec.models import ProcessSpec
from headway.store import Instance, Release, Store


@dataclass
class Once:
    release: int
    argv: list[str]
    env: dict[str, str]
    timeout: float | None
    tty: bool
    instance: str | None


@dataclass
class FakeRuntime:
    store: Store
    kind: str = "fake"
    crash: set[int] = field(default_factory=set)
    exit_code: int = 0
    lines: list[str] = field(default_factory=list)
    ran: list[Once] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def prepare(self, source: Path, files: list[Path], release: Release) -> None:
        Path(release.path).mkdir(parents=True, exist_ok=True)

    def start(self, release: Release, process: str, spec: ProcessSpec,
              env: dict[str, str]) -> Instance:
        inst = ProcessRuntime(self.store).new_instance(release, process, spec, env)
        self.store.add_instance(inst)
        if release.number in self.crash:
            self.store.set_instance(inst.id, state="backoff", exit_code=1, restarts=1)
        else:
            self.store.set_instance(inst.id, state="running", pid=1)
        return inst

    def stop(self, inst: Instance, *, remove: bool = True) -> None:
        self.store.delete_instance(inst.id)

    def observe(self, inst_id: str) -> Instance | None:
        inst = self.store.instance(inst_id)
        if inst and inst.release in self.crash:  # it crashes again at each of the agent's tries
            self.store.set_instance(inst_id, restarts=inst.restarts + 1)
        return self.store.instance(inst_id)

    def spawn_argv(self, inst: Instance) -> list[str]:
        return inst.argv

    def run_once(self, release: Release, argv: list[str], *, env: dict[str, str],
                 timeout: float | None = None, output: Output | None = None,
                 tty: bool = False, instance: Instance | None = None) -> int:
        self.ran.append(Once(release.number, argv, env, timeout, tty,
                             instance.id if instance else None))
        for line in self.lines:
            if output:
                output(line)
        return self.exit_code

    def remove(self, target: Release | Instance) -> None:
        self.removed.append(target.id if isinstance(target, Instance)
                            else f"release {target.number}")
