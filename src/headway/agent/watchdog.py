"""The agent's health watch over live releases, in a thread of its own: probes every running
web instance of an active or warm release on its health path at its interval (as deploys
do, with engine.probe), then
- replaces an instance that has failed for `[processes.NAME.health] restart_after` (SIGKILL
  to its process group; the supervisor starts it again and counts the restart);
- sends traffic back to the warm previous release when the live one has had no healthy
  instance for `[deploy] fallback_after` and the previous one is healthy: the bad release
  is failed with the reason, an event recorded, a deploy row with result "fallback" kept.
Never touches a release a command is deploying (it skips apps whose lock is held)."""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from headway.engine import routing
from headway.engine.probe import probe
from headway.errors import LockedError
from headway.store import Instance, Release, Store, pid_alive


@dataclass
class Health:
    ok: bool
    since: float  # when it became ok / not ok
    reason: str = ""
    probed: float = 0.0
    replaced: float = 0.0  # when the agent last replaced it (failing keeps counting across)
    pid: int | None = None
    up_once: bool = False  # this process has answered its health check at least once


def _settings(release: Release) -> dict[str, Any]:
    spec = json.loads(release.spec).get("spec", {})
    return {"processes": spec.get("processes", {}), "deploy": spec.get("deploy", {})}


class Watchdog:
    def __init__(self, store: Store, engine: Any, router: Any, log: Any) -> None:
        self.store, self.engine, self.router, self.log = store, engine, router, log
        self.health: dict[str, Health] = {}
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="probe")
        self._settings: dict[tuple[str, str, int], dict[str, Any]] = {}

    def round(self) -> None:
        """Probe what is due, then act on what has failed long enough. The store is read once
        per round (apps, their releases, every instance), not again per app: five rounds a
        second over 50 apps made store reads a third of the agent's CPU."""
        now = time.time()
        releases = {(a["app"], a["env"]): self.store.releases(a["app"], a["env"])
                    for a in self.store.apps()}
        insts = self.store.instances()
        watched = self._watched(releases, insts)
        self._probe([(inst, hs) for inst, hs in watched if now - self._probed(inst) >=
                     float(hs.get("interval", 1.0))])
        known = {i.id for i in insts}  # a restarting one keeps its record
        self.health = {k: v for k, v in self.health.items() if k in known}
        for inst, hs in watched:
            self._maybe_replace(inst, float(hs.get("restart_after", 30.0)),
                                float(hs.get("boot", 60.0)))
        for (app, env), rels in releases.items():
            self._maybe_fall_back(app, env, rels, insts)

    # probing ---------------------------------------------------------------------------------
    def _watched(self, releases: dict[tuple[str, str], list[Release]],
                 insts: list[Instance]) -> list[tuple[Instance, dict[str, Any]]]:
        live = {(rel.app, rel.env, rel.number): self._spec(rel)
                for rels in releases.values() for rel in rels
                if rel.status in {"active", "previous"}}
        out = []
        for inst in insts:
            spec = live.get((inst.app, inst.env, inst.release))
            hs = (spec or {}).get("processes", {}).get(inst.process, {}).get("health", {})
            if spec and hs.get("path") and inst.port and inst.desired == "running" \
                    and inst.state == "running" and inst.pid:
                out.append((inst, hs | {"boot": spec["deploy"].get("timeout", 60.0)}))
        return out

    def _spec(self, rel: Release) -> dict[str, Any]:
        key = (rel.app, rel.env, rel.number)
        if key not in self._settings:
            self._settings[key] = _settings(rel)
        return self._settings[key]

    def _probed(self, inst: Instance) -> float:
        h = self.health.get(inst.id)
        return h.probed if h else 0.0

    def _probe(self, todo: list[tuple[Instance, dict[str, Any]]]) -> None:
        results = self.pool.map(lambda job: probe(
            job[0].port, job[1]["path"], timeout=float(job[1].get("timeout", 2.0)),
            expect=job[1].get("expect", "2xx")), todo)
        now = time.time()
        for (inst, _), reason in zip(todo, results, strict=True):
            old = self.health.get(inst.id)
            ok = reason is None
            since = old.since if old and old.ok == ok else now
            same = old is not None and old.pid == inst.pid
            self.health[inst.id] = Health(ok, since, reason or "", now,
                                          old.replaced if old else 0.0, inst.pid,
                                          ok or (same and old is not None and old.up_once))

    def failing_for(self, inst_id: str) -> float:
        """Seconds the instance has been failing its health check (0 when healthy/unknown)."""
        h = self.health.get(inst_id)
        return time.time() - h.since if h and not h.ok else 0.0

    # replacing -------------------------------------------------------------------------------
    def _maybe_replace(self, inst: Instance, restart_after: float, boot: float) -> None:
        """`boot`: a process not yet healthy since it (re)started gets as long as a deploy
        gave it ([deploy] timeout) before it counts as failing."""
        h = self.health.get(inst.id)
        limit = restart_after if h and h.up_once else max(restart_after, boot)
        if not h or h.ok or restart_after <= 0 or \
                time.time() - max(h.since, h.replaced, inst.started or 0) < limit:
            return
        if not pid_alive(inst.pid, inst.pid_start):
            return
        why = (f"instance {inst.id} failed its health check for {limit:g}s "
               f"({h.reason}): replacing it")
        self.log(why, app=inst.app, env=inst.env, release=inst.release, step="watchdog")
        self.store.event(inst.app, inst.env, "instance.replaced", why, release=inst.release)
        assert inst.pid is not None
        try:
            os.killpg(inst.pid, signal.SIGKILL)  # also wakes nothing: a stopped process dies
        except (ProcessLookupError, PermissionError):
            pass
        h.replaced = time.time()

    # falling back ----------------------------------------------------------------------------
    def _maybe_fall_back(self, app: str, env: str, rels: list[Release],
                         insts: list[Instance]) -> None:
        active = next((r for r in rels if r.status == "active"), None)
        warm = next((r for r in rels if r.status == "previous"
                     and (r.warm_until or 0) > time.time()), None)
        if not active or not warm:
            return
        after = float(self._spec(active)["deploy"].get("fallback_after", 10.0))
        bad = self._web(insts, active)
        good = [i for i in self._web(insts, warm) if i.routed == "maint"]
        if after <= 0 or not bad or not good:
            return
        down = [self.failing_for(i.id) for i in bad]
        if min(down) < after or not all(self.health.get(i.id, Health(False, 0)).ok
                                        for i in good):
            return
        reason = self.health[bad[0].id].reason
        try:
            with self.store.lock(f"app:{app}:{env}", "agent fallback"):
                if self.store.release(app, env, active.number) == active:
                    self._fall_back(active, warm, bad, good, f"no healthy instance for "
                                    f"{min(down):.0f}s ({reason})")
        except LockedError:
            return  # a command is working on the app: it decides

    @staticmethod
    def _web(insts: list[Instance], rel: Release) -> list[Instance]:
        return [i for i in insts if (i.app, i.env, i.release) == (rel.app, rel.env, rel.number)
                and i.process == "web" and i.desired == "running"]

    def _fall_back(self, bad_rel: Release, warm: Release, bad: list[Instance],
                   good: list[Instance], why: str) -> None:
        app, env = bad_rel.app, bad_rel.env
        strategy = self._spec(bad_rel)["deploy"].get("strategy", "blue-green")
        deploy = self.store.begin_deploy(app, env, release=warm.number,
                                         previous=bad_rel.number, kind="fallback",
                                         strategy=strategy)
        routing.switch(self.store, self.router, enable=good,
                       drain=[i for i in bad if i.routed == "ready"])
        self.store.set_release(app, env, warm.number, status="active", warm_until=None,
                               failure=None)
        self.engine.retire(bad_rel)
        message = f"release {bad_rel.number}: {why}; traffic back on release {warm.number}"
        self.store.set_release(app, env, bad_rel.number, status="failed",
                               failure=f"fallback: {why}")
        self.store.end_deploy(deploy, "fallback", message)
        self.store.event(app, env, "deploy.fallback", message, release=bad_rel.number)
        self.log(message, app=app, env=env, release=bad_rel.number, step="fallback")

