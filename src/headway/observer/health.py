"""Health gating. A web instance is healthy after `healthy_threshold` consecutive good answers
to GET health.path; a worker after staying up for threshold × interval. An instance that
exits a second time while we wait fails the wait at once, with the tail of its log."""

from __future__ import annotations

import time
from collections.abc import Callable

from headway.engine.probe import probe  # the agent's watch and a deploy judge alike
from headway.errors import DeployFailed
from headway.spec.models import HealthSpec
from headway.store import Instance

NOT_FOUND_LIMIT = 5  # a health path answered 404 this often in a row does not exist
# Exits forgiven while an instance starts: replicas racing at boot (both creating the same
# table, as the FastAPI tutorial's create_all() does) lose one, which the agent restarts at
# once; a release that exits again is broken and fails in seconds all the same.
BOOT_RETRIES = 1


def wait_healthy(insts: list[Instance], health: dict[str, HealthSpec], *, deadline: float,
                 observe: Callable[[str], Instance | None],
                 log_tail: Callable[[Instance], str], quick: bool = False) -> None:
    """Return when every instance is healthy; raise DeployFailed when one dies or time is up.
    `quick` (warm instances that were healthy before): one good probe is enough."""
    streak = {i.id: 0 for i in insts}
    last: dict[str, str] = {}
    missing: dict[str, int] = {}  # 404s in a row

    def need(inst: Instance) -> int:
        web = bool(health[inst.process].path and inst.port)
        return health[inst.process].healthy_threshold if web and not quick else 1

    while True:
        for inst in insts:
            spec = health[inst.process]
            if streak[inst.id] >= need(inst):
                continue
            now = observe(inst.id)
            if now is None or now.state == "failed" or \
                    now.restarts > inst.restarts + BOOT_RETRIES:
                code = now.exit_code if now else None
                raise DeployFailed(
                    f"instance {inst.id} ({inst.process}) exited with code {code} before it "
                    "was healthy", log_tail=log_tail(inst),
                    hint="run it by hand in the app folder to see why, or `headway logs`")
            if now.state != "running":
                continue
            if spec.path and inst.port:
                reason = probe(inst.port, spec.path, timeout=spec.timeout, expect=spec.expect)
            else:
                up = time.time() - (now.started or time.time())
                settle = 0 if quick else spec.interval * spec.healthy_threshold
                reason = None if up >= settle else "starting"
            if reason is None:
                streak[inst.id] += 1
            else:
                streak[inst.id], last[inst.id] = 0, reason
                missing[inst.id] = missing.get(inst.id, 0) + 1 if reason.endswith(" 404") else 0
                if missing[inst.id] >= NOT_FOUND_LIMIT:
                    raise DeployFailed(
                        f"instance {inst.id} serves HTTP, but {reason} on {NOT_FOUND_LIMIT} "
                        "probes in a row: the app has no such route", log_tail=log_tail(inst),
                        hint=f"set [processes.{inst.process}.health] path to a route the app "
                        "answers with 2xx, or remove `path` to accept any answer below 500 on /")
        waiting = [i for i in insts if streak[i.id] < need(i)]
        if not waiting:
            return
        if time.monotonic() > deadline:
            slow = waiting[0]
            raise DeployFailed(
                f"instance {slow.id} was not healthy in time: {last.get(slow.id, 'not started')}",
                log_tail=log_tail(slow),
                hint="check the health path answers 2xx, or raise [deploy] timeout")
        time.sleep(min(health[w.process].interval for w in waiting) if not quick else 0.02)
