"""The bridge between the store and the router: which backends and servers should exist, and
the changes (router intents, see router/base.py) that move instances in and out of rotation,
recorded in the store so that a reload renders exactly the live state. The only code that
changes the router; it never lets a switch leave a live app with no server."""

from __future__ import annotations

import json
from typing import Any

from headway.errors import RouterError
from headway.router import base
from headway.router.base import (
    Add,
    Backend,
    Drain,
    Maint,
    Ready,
    Remove,
    Router,
    RouterBusy,
    Weight,
)
from headway.store import Instance, Store

PENDING = "router.pending_deletes"
OBSERVE = "observe"  # the last deployed app's [observe] table, for the host


def backends(store: Store, *, pending: dict[str, Any] | None = None) -> list[Backend]:
    """The router's backends from the store; `pending` is an app row not yet written."""
    rows = store.apps()
    if pending:
        rows = [r for r in rows if (r["app"], r["env"]) != (pending["app"], pending["env"])]
        rows.append(pending)
    result = []
    for app in rows:
        if not app["router_port"]:  # a fleet host that runs no web process of it
            continue
        servers = [(i.id, i.port, i.routed, i.weight or base.FULL)
                   for i in store.instances(app["app"], app["env"]) if i.routed != "none"]
        result.append(Backend(
            name=base.backend_name(app["app"], app["env"]), port=app["router_port"],
            address=app["router_address"], hosts=app["hosts"], default=bool(app["is_default"]),
            health_path=app["health_path"], health_interval=app["health_interval"],
            health_timeout=app.get("health_timeout") or base.DEFAULT_HEALTH_TIMEOUT,
            health_expect=app.get("health_expect") or "2xx",
            request_timeout=app.get("request_timeout") or base.DEFAULT_REQUEST_TIMEOUT,
            servers=servers))
    return result


def configure(store: Store, router: Router, *, pending: dict[str, Any] | None = None) -> None:
    """Render the router from the store, under the host-wide router lock. A `pending` app row
    is written to the store only once the router has taken it: a refused config (port in use,
    HAProxy missing) leaves no trace."""
    observe = json.loads(store.get(OBSERVE) or "{}")
    port = observe.get("router_metrics_port")
    exporter = (observe["metrics_address"], port) if port else None
    with store.lock("router", "router configuration", wait=30):
        router.configure(backends(store, pending=pending), exporter=exporter,
                         request_log=observe.get("request_log", True))
        if pending:
            store.upsert_app(**pending)


def sync_from_router(store: Store, router: Router, app: str, env: str) -> None:
    """Believe the live router over the store (a killed command may have moved traffic without
    recording it)."""
    web = [i for i in store.instances(app, env) if i.process == "web" and i.desired == "running"]
    if not web:  # nothing the router could hold (and a host without web may run no router)
        return
    live = router.servers(base.backend_name(app, env))
    for inst in web:
        state = live[inst.id].admin if inst.id in live else "none"
        if state != inst.routed:
            store.set_instance(inst.id, routed=state)


def add(store: Store, router: Router, insts: list[Instance], *, check_interval: float) -> None:
    """Add servers for new instances, in maintenance (no traffic yet)."""
    todo = [i for i in insts if i.routed == "none"]
    if not todo:
        return
    router.change(_backend(todo), [Add(i.id, i.port, check_interval) for i in todo])
    for i in todo:
        store.set_instance(i.id, routed="maint")


def switch(store: Store, router: Router, *, enable: list[Instance], drain: list[Instance],
           destroy: bool = False) -> None:
    """Put `enable` in rotation and `drain` out of it, in one exchange. Draining every server
    in rotation without enabling any is refused, unless the app is being destroyed."""
    insts = enable + drain
    if not insts:
        return
    draining = [i for i in drain if i.routed == "ready"]
    if not enable and draining and not destroy:
        _keep_a_server(store, insts[0], leaving={i.id for i in draining})
    router.change(_backend(insts), [*(Ready(i.id) for i in enable),
                                    *(Drain(i.id) for i in draining)])
    for i in enable:
        store.set_instance(i.id, routed="ready", weight=base.FULL)
    for i in draining:
        store.set_instance(i.id, routed="drain")


def split(store: Store, router: Router, *, canary: list[Instance], stable: list[Instance],
          share: int) -> None:
    """Send `share` percent of requests to `canary`, the rest to `stable`, in one exchange."""
    weights = {i.id: max(1, round(2 * share / len(canary))) for i in canary}
    weights |= {i.id: max(1, round(2 * (100 - share) / len(stable))) for i in stable}
    router.change(_backend(canary), [
        Weight(i.id, weights[i.id]) if i.routed == "ready" else Ready(i.id, weights[i.id])
        for i in canary + stable])
    for i in canary + stable:
        store.set_instance(i.id, routed="ready", weight=weights[i.id])


def park(store: Store, router: Router, insts: list[Instance]) -> None:
    """Out of rotation but kept (warm, for an instant rollback)."""
    todo = [i for i in insts if i.routed not in {"none", "maint"}]
    if todo:
        router.change(_backend(todo), [Maint(i.id) for i in todo])
    for i in todo:
        store.set_instance(i.id, routed="maint")


def remove(store: Store, router: Router, insts: list[Instance]) -> None:
    """Out of rotation now (maint); deleted as soon as HAProxy lets go of its pooled idle
    connections, which can take a few seconds: `purge` retries, here and from the agent."""
    todo = [i for i in insts if i.routed != "none"]
    if not todo:
        return
    be = _backend(todo)
    router.change(be, [Maint(i.id) for i in todo])
    for i in todo:
        store.set_instance(i.id, routed="none")
    store.put(PENDING, json.dumps(_pending(store) + [f"{be}/{i.id}" for i in todo]))
    purge(store, router)


def purge(store: Store, router: Router) -> None:
    """Delete the servers taken out by `remove`; keep those the router still holds
    connections to."""
    left = []
    for server in _pending(store):
        be, _, name = server.partition("/")
        try:
            router.change(be, [Remove(name)])
        except RouterBusy:
            left.append(server)
        except RouterError:
            pass  # gone already (e.g. after a reload): done
    store.put(PENDING, json.dumps(left) if left else None)


def _backend(insts: list[Instance]) -> str:
    return base.backend_name(insts[0].app, insts[0].env)


def _keep_a_server(store: Store, inst: Instance, *, leaving: set[str]) -> None:
    """Refuse to take the last servers in rotation out of a live app's backend."""
    ready = [i.id for i in store.instances(inst.app, inst.env)
             if i.process == "web" and i.routed == "ready"]
    if ready and set(ready) <= leaving:
        raise RouterError(f"refusing to drain every server of {inst.app} ({inst.env}) with "
                          "none to take its traffic",
                          hint="deploy or roll back to a release; `headway destroy` takes an "
                          "app down")


def _pending(store: Store) -> list[str]:
    return list(json.loads(store.get(PENDING) or "[]"))
