"""The warm rollback's fast path: from the store alone, is a release ready to take the traffic
back at once (every instance it needs running, its web ones answering their health check)?
Runs before the switch, when every 100 ms counts, so it reads the release's recorded spec as
JSON and probes with the standard library: it must never import pydantic models, httpx or a
runtime. Never changes anything: the engine switches."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from headway.engine.probe import probe
from headway.store import Instance, Release, Store


def settings(release: Release) -> dict[str, Any]:
    """The release's spec as it was validated and recorded at deploy time (defaults filled)."""
    spec: dict[str, Any] = json.loads(release.spec)["spec"]
    return spec


def ready_web(store: Store, release: Release) -> list[Instance] | None:
    """The release's web instances when every process has all its replicas running and each
    web instance answers its health check now; None when the slow path must start or wait
    (also when the recorded spec lacks a key this reads: the slow path validates it)."""
    try:
        return _ready_web(store, release)
    except (KeyError, TypeError, ValueError):
        return None


def _ready_web(store: Store, release: Release) -> list[Instance] | None:
    processes = settings(release)["processes"]
    running = [i for i in store.instances(release.app, release.env, release=release.number)
               if i.desired == "running" and i.state == "running"]
    for name, proc in processes.items():
        if sum(1 for i in running if i.process == name) < int(proc["replicas"]):
            return None
    web = [i for i in running if i.process == "web"]
    health = processes["web"]["health"]
    if not web or any(i.port is None or i.routed not in {"maint", "ready"} for i in web):
        return None
    if health.get("path"):
        with ThreadPoolExecutor(max_workers=len(web)) as pool:
            answers = list(pool.map(lambda i: probe(
                i.port or 0, health["path"], timeout=float(health.get("timeout", 2.0)),
                expect=health.get("expect", "2xx")), web))
        if any(answer is not None for answer in answers):
            return None
    return web

