"""Executes deploys and rollbacks. Every step is journaled before and after it runs; any
failure (or Ctrl-C) returns traffic to the last good release before the error is raised;
a deploy whose command was killed is finished or undone by the next command (or the agent).
Never prints: progress goes to a callback the CLI supplies."""

from __future__ import annotations

import functools
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from headway.engine import recovery, routing, warm
from headway.errors import DeployFailed, HeadwayError, NotFound
from headway.router.base import Router, backend_name
from headway.store import Instance, Release, Store, actor, ports

if TYPE_CHECKING:
    from headway.planner import Step
    from headway.runtime.base import Runtime
    from headway.spec.models import HealthSpec, Spec

# Imported where they are used: a warm rollback switches before it needs any of them
# (pydantic models, accessories, httpx, the runtimes cost a CLI seconds under load).


class Progress(Protocol):
    """Where the engine reports progress: a message, and fields for structured logs."""

    def __call__(self, message: str, /, **fields: object) -> None: ...


def _quiet(message: str, /, **fields: object) -> None:
    pass


@dataclass
class Outcome:
    app: str
    env: str
    release: int | None
    previous: int | None
    changed: bool
    message: str
    seconds: float = 0.0
    switch_seconds: float | None = None


def number(release: Release | None) -> int | None:
    return release.number if release else None


def release_spec(release: Release) -> Spec:
    """The spec a release was deployed with (never to be changed by the caller: shared)."""
    return _spec_of(release.spec)


def recorded(release: Release, *path: str) -> float:
    """A number from the spec the release recorded (validated, defaults filled, at deploy
    time), read without the spec models, which cost a command a second under load; the models
    answer only for a record older than the setting."""
    value: Any = warm.settings(release)
    try:
        for key in path:
            value = value[key]
        return float(value)
    except (KeyError, TypeError, ValueError):
        value = release_spec(release)
        for key in path:
            value = value[key] if isinstance(value, dict) else getattr(value, key)
        return float(value)


@functools.lru_cache(maxsize=64)
def _spec_of(recorded: str) -> Spec:
    """A release's record never changes, and the agent's housekeeping asks for the live
    release of every app every second (prunable): validate each record once."""
    from headway.spec.models import Spec

    return Spec.of_record(recorded)


class Engine:
    def __init__(self, store: Store, router: Router, runtime: Runtime | None = None, *,
                 progress: Progress = _quiet,
                 ensure_agent: Callable[[], None] = lambda: None) -> None:
        """`runtime`: one runtime for every release (tests pass a fake); by default each
        release runs on the runtime it was built for."""
        self.store, self.router, self.runtime = store, router, runtime
        self.progress, self.ensure_agent = progress, ensure_agent

    # reads ------------------------------------------------------------------------------------
    def active(self, app: str, env: str) -> Release | None:
        return next((r for r in self.store.releases(app, env) if r.status == "active"), None)

    def plan(self, spec: Spec, env: str) -> list[Step]:
        from headway.planner import plan_deploy

        active = self.active(spec.app.name, env)
        return plan_deploy(spec, self._live(active) if active else [])

    # deploy ------------------------------------------------------------------------------------
    def deploy(self, spec: Spec, source: Path, env: str, *, force: bool = False) -> Outcome:
        from headway.accessories import manage
        from headway.engine import analysis
        from headway.planner import plan_deploy
        from headway.runtime import artifact, container
        from headway.runtime.process import releases_root
        from headway.secrets import secrets_state, sources

        app, started = spec.app.name, time.monotonic()
        with self.store.lock(f"app:{app}:{env}", f"headway deploy {app} --env {env}",
                             wait=2):
            self.recover(app, env)
            manage.ensure(self.store, spec, env, self.progress)
            for name in sources.sync(self.store, app, env, spec.secrets):
                self.progress(f"secret {name} changed at its source {spec.secrets[name]}",
                              app=app, env=env, step="secrets")
            files = artifact.snapshot_files(source, self.store.home)
            config = json.dumps({"spec": spec.model_dump(mode="json"),
                                 "runtime": container.resolve(spec.app.runtime, spec.build),
                                 "env": spec.environment(env),
                                 "secrets": secrets_state(self.store, app, env)}, sort_keys=True)
            digest = artifact.digest(source, files, config)
            active = self.active(app, env)
            if active and active.digest == digest and not force:
                return Outcome(app, env, active.number, None, False,
                               f"release {active.number} is already live with this code and "
                               "config: nothing to do (--force deploys it again)")
            self._route_app(spec, env)
            root = releases_root(self.store, app, env, json.loads(config)["runtime"])
            release = self.store.add_release(app, env, digest=digest, root=root, spec=config)
            self.progress(f"release {release.number}: building from {source}", app=app, env=env,
                          release=release.number, step="build")
            try:
                self._runtime(release).prepare(source, files, release)
            except HeadwayError as exc:
                self._fail(release, f"build failed: {exc.message}")
                raise
            self.store.set_release(app, env, release.number, status="ready")
            steps = plan_deploy(spec, self._live(active) if active else [])
            deploy = self.store.begin_deploy(app, env, release=release.number,
                                             previous=number(active), kind="deploy",
                                             strategy=spec.deploy.strategy)
            self.store.event(app, env, "deploy.started", f"{spec.deploy.strategy} deploy of "
                             f"release {release.number} by {actor()}", release=release.number)
            self.store.put(analysis.signal_key(app, env), None)  # no stale promote/abort
            try:
                switched = self._execute(deploy, steps, spec, release)
            except BaseException as exc:
                self._undo(deploy, release, active, exc)
                raise
            self._activate(release, active, warm=spec.deploy.strategy != "rolling")
            self.store.end_deploy(deploy, "succeeded")
            took = time.monotonic() - started
            self.store.event(app, env, "deploy.succeeded", f"release {release.number} live "
                             f"in {took:.1f}s", release=release.number)
            return Outcome(app, env, release.number, number(active), True,
                           f"release {release.number} is live", took, switched)

    def _execute(self, deploy: int, steps: list[Step], spec: Spec, release: Release) -> float:
        """Run the steps in order, each journaled before and after; the longest switch."""
        from headway.engine.steps import Steps

        run = Steps(self, spec, release)
        handlers = [run.handler(step.kind) for step in steps]  # all known before any runs
        for step, handler in zip(steps, handlers, strict=True):
            self.store.journal(deploy, step.kind, "begin")
            self.progress(step.describe(), app=release.app, env=release.env,
                          release=release.number, step=step.kind)
            handler(step)
            self.store.journal(deploy, step.kind, "done")
        return run.switched

    # one-off commands --------------------------------------------------------------------------
    def run(self, app: str, env: str, argv: list[str], *, release: int | None = None,
            tty: bool = False) -> int:
        """argv in a new short-lived instance of `release` (default: the live one), on the
        caller's terminal; its exit code. Never in rotation."""
        rel = self._built(app, env, release)
        return self._runtime(rel).run_once(rel, argv, env=json.loads(rel.spec)["env"], tty=tty)

    def exec(self, app: str, env: str, argv: list[str], *, instance: str | None = None,
             tty: bool = False) -> int:
        """argv inside a running instance (default: one of the live release's web ones)."""
        running = [i for i in self.store.instances(app, env)
                   if i.desired == "running" and i.state == "running"]
        active = self.active(app, env)
        if instance is not None:
            inst = next((i for i in running if i.id == instance), None)
        else:
            inst = next((i for i in sorted(running, key=lambda i: i.process != "web")
                         if active and i.release == active.number), None)
        if inst is None:
            raise NotFound(f"{app} ({env}) has no running instance "
                           + (instance or "of its live release"),
                           hint="`headway status` lists them")
        rel = self._built(app, env, inst.release)
        return self._of(inst).run_once(rel, argv, env=json.loads(rel.spec)["env"], tty=tty,
                                       instance=inst)

    def _built(self, app: str, env: str, number: int | None) -> Release:
        """The release (default: the live one), refused unless its artifact exists."""
        rel = self.active(app, env) if number is None else self.store.release(app, env, number)
        if rel is None:
            raise NotFound(f"{app} ({env}) has " + ("no live release" if number is None else
                                                    f"no release {number}"),
                           hint="`headway releases` lists them; `headway deploy` builds one")
        broken = rel.status in {"building", "pruned"} or not Path(rel.path).is_dir() \
            or (rel.failure or "").startswith("build failed")
        if broken:
            raise NotFound(f"release {rel.number} of {app} ({env}) is not built "
                           f"({rel.status}{': ' + rel.failure if rel.failure else ''})",
                           hint="`headway releases` lists the ones that are")
        return rel

    # rollback, recovery, undo ------------------------------------------------------------------
    def rollback(self, app: str, env: str, to: int | None = None) -> Outcome:
        """Put `to` (default: the newest earlier good release) live again. A warm one (all its
        instances running and healthy) takes the traffic in one switch before anything else
        is done; the rest (starting what is missing, draining, parking, warnings) follows."""
        started = time.monotonic()
        with self.store.lock(f"app:{app}:{env}", f"headway rollback {app} --env {env}",
                             wait=2):
            self.recover(app, env)
            active = self.active(app, env)
            target = self._rollback_target(app, env, active, to)
            deploy = self.store.begin_deploy(app, env, release=target.number,
                                             previous=number(active), kind="rollback",
                                             strategy="switch")
            switched = None
            try:
                web = warm.ready_web(self.store, target)
                if web is not None:
                    switched = self._switch_to(target, web)
                how = (f"warm: traffic switched in {switched * 1000:.0f} ms" if switched is not None
                       else "partly warm: starting and checking it first" if self._live(target)
                       else "cold: restarting it")
                self.progress(f"rolling back to release {target.number} ({how})", app=app,
                              env=env, release=target.number, step="rollback")
                self._converge(target, keep_warm=number(active), probed=web is not None)
            except BaseException as exc:
                self._undo(deploy, target, active, exc)
                raise
            if active:
                self._warn_schema(target, active)
            self._activate(target, active, warm=True)
            self.store.end_deploy(deploy, "succeeded")
            took = time.monotonic() - started
            self.store.event(app, env, "rollback", f"rolled back to release {target.number} "
                             f"in {took:.2f}s by {actor()}", release=target.number)
            return Outcome(app, env, target.number, number(active), True,
                           f"release {target.number} is live again", took, switched)

    def _switch_to(self, target: Release, web: list[Instance]) -> float:
        """Move all traffic to `target`'s warm, healthy web instances in one exchange; the
        seconds it took. What was in rotation drains (_converge waits for it)."""
        t0 = time.monotonic()
        interval = float(warm.settings(target)["processes"]["web"]["health"]["interval"])
        routing.add(self.store, self.router, web, check_interval=interval)
        others = [i for i in self.store.instances(target.app, target.env)
                  if i.release != target.number and i.desired == "running"
                  and i.routed == "ready"]
        routing.switch(self.store, self.router, enable=self._get([i.id for i in web]),
                       drain=others)
        return time.monotonic() - t0

    def _rollback_target(self, app: str, env: str, active: Release | None,
                         to: int | None) -> Release:
        if to is not None:
            target = self.store.release(app, env, to)
            why = ("it does not exist" if target is None
                   else "its files were deleted ([deploy] keep_releases)"
                   if target.status == "pruned"
                   else f"it {target.status}" if target.status in {"building", "failed"}
                   else None)
            if target is None or why:
                raise NotFound(f"release {to} of {app} ({env}) cannot be rolled back to: {why}",
                               hint="`headway releases` lists them")
            if active and target.number == active.number:
                raise NotFound(f"release {to} is already live")
            return target
        for rel in self.store.releases(app, env):
            if rel.status in {"previous", "retired"} and (not active or rel.number < active.number):
                return rel
        raise NotFound(f"{app} ({env}) has no earlier good release to roll back to")

    def _warn_schema(self, target: Release, active: Release) -> None:
        """Rolling back code does not roll back data: say so, and which backup holds it."""
        later = [r for r in self.store.releases(target.app, target.env)
                 if target.number < r.number <= active.number]
        if not any((warm.settings(r).get("release") or {}).get("command") for r in later):
            return  # no release command (migration) ran since: nothing to warn about
        from headway.accessories import backups  # costs a command half a second

        changed = backups.schema_changes(self.store, target.app, target.env, target.number,
                                         active.number)
        if changed:
            first = changed[0]
            self.progress(f"warning: the database is not rolled back. Release {first.release} "
                          f"ran its release command (migrations) after release {target.number}; "
                          f"the data from before it is backup {first.id}. If release "
                          f"{target.number} needs the older schema: {first.restore_command()}",
                          app=target.app, env=target.env, release=target.number, step="warning")

    def recover(self, app: str, env: str) -> None:
        """Finish or undo deploys whose command died (recovery.decide says which). Caller
        holds the app lock."""
        for dead in self.store.interrupted_deploys(app, env):
            routing.sync_from_router(self.store, self.router, app, env)
            new = self.store.release(app, env, dead["release"])
            old = self.store.release(app, env, dead["previous"]) if dead["previous"] else None
            serving = frozenset(i.release for i in self.store.instances(app, env)
                                if i.routed == "ready")
            decision = recovery.decide(recovery.Interrupted(
                kind=dead["kind"], new=number(new), previous=number(old), serving=serving,
                new_status=new.status if new else ""))
            done = "finished" if decision.finished else "undone"
            self.progress(f"an interrupted {dead['kind']} of release {dead['release']} was found:"
                          + (" finishing it" if decision.finished else " undoing it")
                          + f" ({decision.reason})", app=app, env=env,
                          release=dead["release"], step="recover")
            if decision.action == "finish" and new:
                self._converge(new, keep_warm=number(old))
                self._activate(new, old, warm=True)
            elif decision.action == "undo" and old:
                self._converge(old, keep_warm=None, discard=number(new))
            elif decision.action == "discard" and new:
                self._discard(self.store.instances(app, env, release=new.number))
            if decision.fail_new and new:
                self.store.set_release(app, env, new.number, status="failed",
                                       failure="interrupted")
            self.store.end_deploy(dead["id"], "recovered", done)
            self.store.event(app, env, "deploy.recovered", f"interrupted {dead['kind']} of "
                             f"release {dead['release']} {done}: {decision.reason}",
                             release=dead["release"])

    def _undo(self, deploy: int, release: Release, previous: Release | None,
              exc: BaseException) -> None:
        why = exc.message.splitlines()[0] if isinstance(exc, HeadwayError) \
            else type(exc).__name__
        self.progress(f"failed: {why}; "
                      + (f"returning traffic to release {previous.number}" if previous else
                         "stopping its instances"), app=release.app, env=release.env,
                      release=release.number, step="undo")
        if previous:
            self._converge(previous, keep_warm=None, discard=release.number)
        else:
            self._discard(self.store.instances(release.app, release.env, release=release.number))
        self._fail(release, why)
        self.store.end_deploy(deploy, "failed", why)
        if isinstance(exc, DeployFailed) and previous:
            exc.hint = f"traffic stayed on release {previous.number}"

    def _fail(self, release: Release, why: str) -> None:
        """Mark a release failed, unless it is live (a failed rollback away from it)."""
        current = self.store.release(release.app, release.env, release.number)
        if current is None or current.status == "active":
            return
        self.store.set_release(release.app, release.env, release.number, status="failed",
                               failure=why)
        self.store.event(release.app, release.env, "deploy.failed", why, release=release.number)

    def _converge(self, target: Release, *, keep_warm: int | None,
                  discard: int | None = None, probed: bool = False) -> None:
        """Make `target` take all traffic: reuse its warm instances, start what is missing,
        switch, drain the rest; park the web instances of `keep_warm`, stop the others.
        `probed`: all its instances run and answered a probe just now (a warm rollback's
        switch): nothing to start or check, and no need for the spec models."""
        running = self._live(target)
        fresh = [] if probed else self._start_missing(target, running)
        web = self._get([i.id for i in running + fresh if i.process == "web"])
        routing.add(self.store, self.router, web,
                    check_interval=recorded(target, "processes", "web", "health", "interval"))
        others = [i for i in self.store.instances(target.app, target.env)
                  if i.release != target.number and i.desired == "running"]
        in_traffic = [i for i in others if i.routed in {"ready", "drain"}]
        drained = {i.id for i in in_traffic}
        routing.switch(self.store, self.router, enable=self._get([i.id for i in web]),
                       drain=in_traffic)
        self._wait_drained(self._get([i.id for i in in_traffic]),
                           recorded(target, "deploy", "drain_timeout"))
        for inst in self._get([i.id for i in others]):
            if inst.release == keep_warm and inst.process == "web":
                routing.park(self.store, self.router, [inst])
            elif inst.id in drained or inst.release in {keep_warm, discard} \
                    or inst.process != "web":
                self._discard([inst])

    def _start_missing(self, target: Release, running: list[Instance]) -> list[Instance]:
        """Check `running` (one good probe each), start the replicas `target` lacks and wait
        until they are healthy; the started ones."""
        spec = release_spec(target)
        health = {name: p.health for name, p in spec.processes.items()}
        env_vars = json.loads(target.spec)["env"]
        if running:
            self._wait_healthy(running, health, spec.deploy.timeout, quick=True)
        fresh = []
        for name, proc in spec.processes.items():
            have = sum(1 for i in running if i.process == name)
            for _ in range(proc.replicas - have):
                fresh.append(self._runtime(target).start(target, name, proc, env_vars))
        if fresh:
            self._wait_healthy(self._get([i.id for i in fresh]), health, spec.deploy.timeout)
        return fresh

    def _activate(self, release: Release, previous: Release | None, *, warm: bool) -> None:
        app, env, now = release.app, release.env, time.time()
        self.store.set_release(app, env, release.number, status="active", deployed=now,
                               failure=None, warm_until=None)
        keep_previous = recorded(release, "deploy", "keep_previous")
        for rel in self.store.releases(app, env):
            if rel.number == release.number or rel.status not in {"active", "previous"}:
                continue
            if warm and previous and rel.number == previous.number and self._live(rel):
                self.store.set_release(app, env, rel.number, status="previous",
                                       warm_until=now + keep_previous)
            else:
                self.retire(rel)
        self.prune(app, env)

    def prunable(self, app: str, env: str) -> list[Release]:
        """Retired and failed releases beyond the newest `keep_releases` whose instances are
        all gone (one still stopping may be running from the folder, or its image)."""
        active = self.active(app, env)
        keep = int(recorded(active, "deploy", "keep_releases")) if active else 10
        return [rel for rel in self.store.releases(app, env)[keep:]
                if rel.status in {"retired", "failed"}
                and not self.store.instances(app, env, release=rel.number)]

    def prune(self, app: str, env: str) -> None:
        """Delete their folders (and images); the agent calls this too, for releases whose
        instances were still stopping when the deploy that retired them ended."""
        for rel in self.prunable(app, env):
            self._runtime(rel).remove(rel)
            shutil.rmtree(rel.path, ignore_errors=True)
            self.store.set_release(app, env, rel.number, status="pruned")

    def retire(self, release: Release) -> None:
        """Stop a release's instances; it stays available for a (cold) rollback."""
        self._discard(self.store.instances(release.app, release.env, release=release.number))
        self.store.set_release(release.app, release.env, release.number, status="retired",
                               warm_until=None)

    # destroy ---------------------------------------------------------------------------------
    def destroy(self, app: str, env: str, *, volumes: bool = False) -> None:
        """Stop and forget the app's environment; its volumes' data too with `volumes`."""
        from headway.accessories import manage
        from headway.runtime import container
        from headway.runtime.process import volumes_root

        with self.store.lock(f"app:{app}:{env}", f"headway destroy {app} --env {env}",
                             wait=2):
            insts = self.store.instances(app, env)
            if not insts and not any(a["app"] == app and a["env"] == env for a in self.store.apps()):
                raise NotFound(f"{app} ({env}) is not deployed on this host")
            if self.router.running():
                web = [i for i in insts if i.routed in {"ready", "drain"}]
                routing.switch(self.store, self.router, enable=[], drain=web, destroy=True)
                self._wait_drained(self._get([i.id for i in web]), 10)
            for inst in insts:
                self._of(inst).stop(inst)
            self._wait_gone([i.id for i in insts], timeout=max([i.stop_timeout for i in insts],
                                                               default=0) + 5)
            for acc in manage.load(self.store, app, env):
                manage.stop(self.store, acc)
            container.remove_secrets(self.store.home, app, env)
            if volumes:
                shutil.rmtree(volumes_root(self.store, app, env), ignore_errors=True)
            self.store.delete_app(app, env)
            if self.store.apps() and self.router.running():  # its port, and only its, freed
                routing.configure(self.store, self.router)
            self.store.event(app, env, "destroyed", f"{app} ({env}) removed from this host")

    # helpers ---------------------------------------------------------------------------------
    def _route_app(self, spec: Spec, env: str) -> None:
        """Make the router serve this app (a reload only when its routing changed). A fleet
        host without web ([servers] roles) records the app with router port 0: not routed."""
        routed = spec.serves_web()
        web = spec.processes["web"].health
        row: dict[str, Any] = {
            "app": spec.app.name, "env": env, "router_port": spec.router.port if routed else 0,
            "router_address": spec.router.address, "hosts": spec.router.hosts,
            "is_default": spec.router.default, "health_path": web.path or "/",
            "health_interval": web.interval, "health_timeout": web.timeout,
            "health_expect": web.expect, "request_timeout": spec.router.request_timeout}
        # refused before anything is recorded: a port another home's agent serves, or a router
        # port whose Host headers could not tell this app from another
        ports.check_service_ports(self.store.home,
                                  {"observe.metrics_port": spec.observe.metrics_port})
        if routed:
            ports.check_router_port(self.store.apps(), app=spec.app.name, env=env,
                                    port=spec.router.port, hosts=spec.router.hosts,
                                    default=spec.router.default)
        current = next((a for a in self.store.apps()
                        if (a["app"], a["env"]) == (spec.app.name, env)), None)
        same = current is not None and all(current[k] == v for k, v in row.items())
        observe = spec.observe.model_dump_json()
        if self.store.get(routing.OBSERVE) != observe:
            self.store.put(routing.OBSERVE, observe)
            same = False
        if not routed and not self.router.running():
            self.store.upsert_app(**row)  # no HAProxy for an app it would not serve
        elif not same or not self.router.running():
            routing.configure(self.store, self.router, pending=row)
        self.ensure_agent()  # after the app is recorded: an agent with no app exits
        routing.sync_from_router(self.store, self.router, spec.app.name, env)

    def _runtime(self, release: Release) -> Runtime:
        """Where the release's instances and commands run: the runtime it was built for."""
        from headway.runtime.base import for_kind, release_kind

        return self.runtime or for_kind(release_kind(release), self.store)

    def _of(self, inst: Instance) -> Runtime:
        from headway.runtime.base import for_kind, instance_kind

        return self.runtime or for_kind(instance_kind(inst), self.store)

    def _live(self, release: Release) -> list[Instance]:
        return [i for i in self.store.instances(release.app, release.env, release=release.number)
                if i.desired == "running"]

    def _get(self, ids: list[str]) -> list[Instance]:
        return [i for i in map(self.store.instance, ids) if i is not None]

    def _wait_healthy(self, insts: list[Instance], health: dict[str, HealthSpec],
                      timeout: float, *, quick: bool = False) -> None:
        from headway.observer.health import wait_healthy
        from headway.runtime.process import log_tail

        by_id = {i.id: self._of(i) for i in insts}
        wait_healthy(insts, health, deadline=time.monotonic() + timeout,
                     observe=lambda inst_id: by_id[inst_id].observe(inst_id),
                     log_tail=log_tail, quick=quick)

    def _wait_drained(self, insts: list[Instance], timeout: float) -> None:
        if not insts:
            return
        backend = backend_name(insts[0].app, insts[0].env)
        names = {i.id for i in insts}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = self.router.servers(backend)
            if all(live[n].sessions == 0 for n in names if n in live):
                return
            time.sleep(0.05)

    def _discard(self, insts: list[Instance]) -> None:
        routing.remove(self.store, self.router, [i for i in insts if i.routed != "none"])
        for inst in insts:
            self._of(inst).stop(inst)

    def _wait_gone(self, ids: list[str], *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while any(self.store.instance(i) for i in ids) and time.monotonic() < deadline:
            time.sleep(0.05)
