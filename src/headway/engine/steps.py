"""The steps of a deploy plan, one method per kind, found through a table (`Steps.handler`):
an unknown kind is refused before any step runs. The engine journals each step around its
method. Never prints: progress goes to the engine's callback."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from headway.engine import routing
from headway.errors import DeployFailed, RuntimeFailure

if TYPE_CHECKING:
    from headway.engine import analysis
    from headway.engine.engine import Engine
    from headway.planner import Step
    from headway.spec.models import AnalysisSpec, Spec
    from headway.store import Instance, Release


class Steps:
    """One deploy's steps: what they started (by group) and the longest switch."""

    def __init__(self, engine: Engine, spec: Spec, release: Release) -> None:
        self.engine, self.spec, self.release = engine, spec, release
        self.store, self.router, self.progress = engine.store, engine.router, engine.progress
        self.env_vars: dict[str, str] = json.loads(release.spec)["env"]
        self.health = {name: p.health for name, p in spec.processes.items()}
        self.groups: dict[str, list[str]] = {}
        self.switched = 0.0

    def handler(self, kind: str) -> Callable[[Step], None]:
        """The method that runs a step of this kind; an unknown kind is a bug in Headway (the
        planner and the engine disagree), refused before the deploy changes anything."""
        table: dict[str, Callable[[Step], None]] = {
            "release": self.do_release, "start": self.do_start,
            "wait_healthy": self.do_wait_healthy, "switch": self.do_switch,
            "canary": self.do_canary, "analyze": self.do_analyze,
            "wait_drained": self.do_wait_drained, "park": self.do_park, "stop": self.do_stop,
            "activate": self.do_activate}
        if kind not in table:
            raise DeployFailed(f"internal error: the plan has a step of unknown kind {kind!r} "
                               f"(the engine runs {', '.join(sorted(table))}); this is a bug "
                               "in Headway, please report it with `headway deploy --dry-run`",
                               hint="nothing was changed by this deploy")
        return table[kind]

    def do_release(self, step: Step) -> None:
        self._release_phase()

    def do_start(self, step: Step) -> None:
        runtime = self.engine._runtime(self.release)
        for _ in range(step.count):
            inst = runtime.start(self.release, step.process, self.spec.processes[step.process],
                                 self.env_vars)
            self.groups.setdefault(step.group, []).append(inst.id)

    def do_wait_healthy(self, step: Step) -> None:
        insts = self.engine._get([i for g in step.groups for i in self.groups.get(g, [])])
        self.engine._wait_healthy(insts, self.health, self.spec.deploy.timeout)

    def do_switch(self, step: Step) -> None:
        new, old = self._routed(step), self.engine._get(list(step.old))
        t0 = time.monotonic()
        routing.switch(self.store, self.router, enable=new, drain=old)
        self.switched = max(self.switched, time.monotonic() - t0)

    def do_canary(self, step: Step) -> None:
        from headway.engine import analysis

        old, canary, release = self.engine._get(list(step.old)), self.spec.deploy.canary, \
            self.release
        routing.split(self.store, self.router, canary=self._routed(step),
                      stable=old, share=step.count)
        self._judge(analysis.Watch(
            release.app, release.env, release.number, old[0].release,
            f"canary at {step.count}%", time.time(), pause=canary.pause,
            max_wait=canary.max_wait, manual=canary.manual), canary.analysis)

    def do_analyze(self, step: Step) -> None:
        from headway.engine import analysis

        old, release = self.engine._get(list(step.old)), self.release
        now, span = time.time(), self.spec.deploy.analysis
        self._judge(analysis.Watch(
            release.app, release.env, release.number, old[0].release,
            "release after the switch", now, stable_window=(now - span, now),
            pause=span, max_wait=span), self.spec.deploy.canary.analysis)

    def do_wait_drained(self, step: Step) -> None:
        self.engine._wait_drained(self.engine._get(list(step.old)),
                                  self.spec.deploy.drain_timeout)

    def do_park(self, step: Step) -> None:
        routing.park(self.store, self.router, self.engine._get(list(step.old)))

    def do_stop(self, step: Step) -> None:
        self.engine._discard(self.engine._get(list(step.old)))

    def do_activate(self, step: Step) -> None:
        """Journaled only: `deploy` marks the release live once every step is done."""

    def _routed(self, step: Step) -> list[Instance]:
        """The step's new instances, added to the router (in maintenance), as stored now."""
        groups, spec = self.groups, self.spec
        ids = [i for g in step.groups for i in groups.get(g, [])]
        routing.add(self.store, self.router, self.engine._get(ids),
                    check_interval=spec.processes["web"].health.interval)
        return self.engine._get(ids)

    def _release_phase(self) -> None:
        """The release command, once, in a new short-lived instance of the release (its image,
        or its folder and dependencies), after a backup of the accessories it may change. Its
        output goes line by line to the progress callback and to logs/release-N.log."""
        from headway.accessories import backups
        from headway.runtime.process import expand

        spec, release, env_vars = self.spec, self.release, self.env_vars
        assert spec.release.command
        taken = backups.before_release(self.store, release.app, release.env,
                                       spec.pre_release_backups(), release.number)
        fields: dict[str, object] = {"app": release.app, "env": release.env,
                                     "release": release.number}
        for b in taken:
            self.progress(f"backup {b.id} of {b.accessory} taken ({b.size} bytes)",
                          **fields, step="backup")
        known = env_vars | {"HEADWAY_APP": release.app, "HEADWAY_ENV": release.env,
                            "HEADWAY_RELEASE": str(release.number)}
        argv = expand(spec.release.command, known)  # secrets: in its environment, not argv
        log = self.store.home / "apps" / release.app / release.env / "logs" / \
            f"release-{release.number}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as out:
            def line(text: str) -> None:
                out.write(text)
                out.flush()
                self.progress(f"[release {release.number}] {text.rstrip()}", **fields,
                              step="release")

            try:
                code = self.engine._runtime(release).run_once(
                    release, argv, env=env_vars, timeout=spec.release.timeout, output=line)
                why = f"exited {code}"
            except RuntimeFailure as exc:
                out.write(f"headway: {exc.message}\n")
                code, why = -1, exc.message
        self.store.event(release.app, release.env, "release.command",
                         f"`{spec.release.command}` {why}", release=release.number)
        if code != 0:
            tail = "".join(log.read_text(errors="replace").splitlines(True)[-20:])
            saved = "".join(f"\nthe data before it is backup {b.id}; to put it back: "
                            f"{b.restore_command()}" for b in taken)
            raise DeployFailed(f"release command `{spec.release.command}` {why}; no traffic "
                               f"moved{saved}", log_tail=tail, hint=f"full output: {log}")

    def _judge(self, w: analysis.Watch, limits: AnalysisSpec) -> None:
        from headway.engine import analysis

        self.store.event(w.app, w.env, "analysis.started", f"{w.label}: judging release "
                         f"{w.canary} against {w.stable}", release=w.canary)
        verdict = analysis.watch(self.store, w, limits, progress=lambda m: self.progress(
            m, app=w.app, env=w.env, release=w.canary, step="judge"))
        self.store.event(w.app, w.env, "analysis.passed", f"{w.label}: {verdict.reason} "
                         f"{json.dumps(verdict.figures)}", release=w.canary)
