"""`headway run -- CMD` with runtime = "kubernetes": CMD as a Job (like the release Job:
backoffLimit 0, restartPolicy Never, a TTL) whose pod is the live (or --release) release's web
pod template: its image, its ConfigMap and Secret references, service account, security
context and volumes, without ports, probes or preStop, and labelled component "run" so no
Service selects it. Its log is read while it runs (GET .../log, polled: no watch or follow)
and handed to `output` line by line; the result is the container's exit code. Ctrl-C or an
error deletes the Job. No stdin, no TTY. Never puts a secret value anywhere: the Job only
references the release's Secret. The calls are cluster.API_CALLS."""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable
from typing import Any

from headway.errors import HeadwayError, NotFound, RuntimeFailure
from headway.kube import release as rel
from headway.kube.cluster import Obj
from headway.kube.objects import labels
from headway.kube.rollout import POLL, Rollout

Output = Callable[[str], None]
TTL = 3600  # seconds a finished one-off Job (and its log) stays


def job(rollout: Rollout, template: Obj, argv: list[str], number: int) -> Obj:
    """The one-off Job from a release's web Deployment's pod template."""
    app, env = rollout.app, rollout.env
    pod = copy.deepcopy(template)
    spec = pod["spec"]
    container = spec["containers"][0]
    container["name"] = "run"
    container["args"] = list(argv)
    for key in ("ports", "startupProbe", "readinessProbe", "livenessProbe", "lifecycle"):
        container.pop(key, None)
    spec["containers"] = [container]
    spec["restartPolicy"] = "Never"
    spec.pop("terminationGracePeriodSeconds", None)
    pod["metadata"] = {"labels": labels(app, "run") | {rel.ENVIRONMENT: env,
                                                       rel.RELEASE: str(number)}}
    name = f"{app}-run-r{number}-{secrets.token_hex(3)}"
    meta = {"name": name, "labels": labels(app, "run") | {rel.ENVIRONMENT: env},
            "annotations": {"headway.dev/run": "headway run (one-off command)",
                            "headway.dev/run-release": str(number)}}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
            "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": TTL, "template": pod}}


def run(rollout: Rollout, argv: list[str], *, release: int | None, output: Output,
        progress: Output) -> int:
    """Runs argv in a Job of the release; its exit code."""
    rollout.check_namespace()
    number = release if release is not None else rollout.live()
    if number is None:
        raise NotFound(f"{rollout.app} ({rollout.env}) has no live release in namespace "
                       f"{rollout.cluster.namespace}", hint="headway deploy first")
    web = rollout.cluster.get("Deployment", rel.deployment_name(rollout.app, "web", number))
    if web is None:
        raise NotFound(f"release {number} of {rollout.app} ({rollout.env}) is not kept in "
                       f"namespace {rollout.cluster.namespace}",
                       hint="headway releases lists what is kept")
    obj = job(rollout, web["spec"]["template"], argv, number)
    name = obj["metadata"]["name"]
    progress(f"running in Job {name} (release {number}, "
             f"{rel.notes_of(web).get(rel.IMAGE, 'its image')})")
    rollout.cluster.apply(obj)
    try:
        return follow(rollout, name, output)
    except BaseException:
        try:
            rollout.cluster.delete("Job", name)
        except HeadwayError:
            pass  # its TTL removes it
        raise


def follow(rollout: Rollout, name: str, output: Output) -> int:
    """The Job's log as it grows, then its pod's exit code."""
    printed = 0
    while True:
        pods = rollout.cluster.list("Pod", {"job-name": name})
        pod = pods[0] if pods else None
        if pod is not None:
            lines = rollout.cluster.log(pod["metadata"]["name"], container="run").splitlines()
            for line in lines[printed:]:
                output(line)
            printed = max(printed, len(lines))
            code = exit_code(pod)
            if code is not None:
                return code
        state = rollout.cluster.get("Job", name)
        if state is None:
            raise RuntimeFailure(f"Job {name} was deleted before it finished",
                                 hint=f"kubectl -n {rollout.cluster.namespace} get events")
        if pod is None and failed(state):
            raise RuntimeFailure(f"Job {name} failed before its pod ran: {failed(state)}",
                                 hint=f"kubectl -n {rollout.cluster.namespace} describe "
                                 f"job {name}")
        rollout.sleep(POLL)


def exit_code(pod: Obj) -> int | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated")
        if terminated and terminated.get("exitCode") is not None:
            return int(terminated["exitCode"])
    return None


def failed(job: Obj) -> str | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Failed" and c.get("status") == "True":
            return str(c.get("message") or c.get("reason") or "Failed")
    return None


def refusal(command: str) -> dict[str, Any]:
    """What `headway accessory|backup` say on runtime = "kubernetes"."""
    return {"message": f"headway {command} is not built for runtime \"kubernetes\": it runs no "
            "accessory in the cluster, and an [accessories.NAME] with external = true is "
            "yours to run and back up", "hint": "use your database provider's tools; "
            "headway run -- CMD runs a command in the live release (e.g. a dump to storage "
            "it can reach)"}
