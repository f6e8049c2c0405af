"""Turns (spec, the running instances) into the steps of a deploy. Pure: no I/O, no clock.
New instances do not exist yet, so steps name them by group ("web", "web.2", "worker");
old instances are named by id. The engine runs the steps in order and journals each one."""

from __future__ import annotations

from dataclasses import dataclass, field

from headway.spec.models import ProcessSpec, Spec
from headway.store import Instance


@dataclass(frozen=True)
class Step:
    kind: str  # release | start | wait_healthy | canary | switch | analyze | wait_drained | park
    #            | stop | activate
    group: str = ""
    process: str = ""
    count: int = 0
    groups: tuple[str, ...] = ()
    old: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        old = ", ".join(self.old) or "none"
        return {
            "release": "run the release command (before any traffic moves)",
            "start": f"start {self.count} × {self.process} of the new release ({self.group})",
            "wait_healthy": f"wait until {', '.join(self.groups)} are healthy",
            "canary": f"send {self.count}% of requests to {', '.join(self.groups)} and judge it",
            "switch": f"route traffic to {', '.join(self.groups)}; drain {old}",
            "analyze": f"judge {', '.join(self.groups)} on live traffic; switch back on a breach",
            "wait_drained": f"wait for in-flight requests on {old} to finish",
            "park": f"take {old} out of rotation, kept warm for rollback",
            "stop": f"remove {old} from the router and stop them",
            "activate": "mark the new release live",
        }[self.kind]


def plan_deploy(spec: Spec, running: list[Instance]) -> list[Step]:
    """Steps that replace `running` (the live release's instances) with the spec's release."""
    old_web = [i.id for i in running if i.process == "web"]
    workers = {name: p for name, p in spec.processes.items() if name != "web" and p.replicas}
    web_replicas = spec.processes["web"].replicas
    if not web_replicas:  # a fleet host of other processes ([servers] roles): nothing routed
        steps = _workers(workers)
    elif spec.deploy.strategy in {"blue-green", "canary"}:
        steps = [Step("start", group="web", process="web", count=web_replicas)]
        steps += [Step("start", group=n, process=n, count=p.replicas) for n, p in workers.items()]
        steps.append(Step("wait_healthy", groups=("web", *workers)))
        if old_web and spec.deploy.strategy == "canary":  # a first deploy has nothing to compare
            steps += [Step("canary", groups=("web",), count=share, old=tuple(old_web))
                      for share in spec.deploy.canary.steps[:-1]]
        steps.append(Step("switch", groups=("web",), old=tuple(old_web)))
        if old_web:
            steps += [Step("wait_drained", old=tuple(old_web)), Step("park", old=tuple(old_web))]
            if spec.deploy.strategy == "blue-green" and spec.deploy.analysis:
                steps.append(Step("analyze", groups=("web",), old=tuple(old_web)))
    else:
        steps = _rolling_web(web_replicas, old_web, spec.deploy.max_surge) + _workers(workers)
    old_workers = tuple(i.id for i in running if i.process != "web" or not web_replicas)
    if old_workers:
        steps.append(Step("stop", old=old_workers))
    steps.append(Step("activate"))
    return [Step("release"), *steps] if spec.release.command else steps


def _workers(workers: dict[str, ProcessSpec]) -> list[Step]:
    return [s for name, p in workers.items() for s in (
        Step("start", group=name, process=name, count=p.replicas),
        Step("wait_healthy", groups=(name,)))]


def _rolling_web(replicas: int, old: list[str], surge: int) -> list[Step]:
    steps: list[Step] = []
    batches = max(replicas, len(old), 1)
    for n, at in enumerate(range(0, batches, surge)):
        count = max(0, min(surge, replicas - at))
        retire = tuple(old[at:at + surge])
        group = f"web.{n + 1}"
        if count:
            steps += [Step("start", group=group, process="web", count=count),
                      Step("wait_healthy", groups=(group,))]
        steps.append(Step("switch", groups=(group,) if count else (), old=retire))
        if retire:
            steps += [Step("wait_drained", old=retire), Step("stop", old=retire)]
    return steps
