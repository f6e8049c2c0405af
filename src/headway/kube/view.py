"""What `headway releases`, `status` and `logs` show for runtime = "kubernetes", read from the
cluster: the releases are the app's Deployments (labels and annotations) and its release
Jobs, the live one is the release the web Service selects. Reads only: never applies,
patches or deletes anything. Plain rows for the CLI to print."""

from __future__ import annotations

import re
from typing import Any

from headway.errors import ConfigError
from headway.kube import release as rel
from headway.kube.cluster import Cluster, Obj
from headway.kube.rollout import Rollout, available

Row = dict[str, Any]


def releases(rollout: Rollout) -> list[Row]:
    """Newest first: number, status, created, deployed, image, replicas, failure."""
    rollout.check_namespace()
    live = rollout.live()
    rows: dict[int, Row] = {}
    for d in rollout.deployments():
        number = rel.release_of(d) or 0
        notes = rel.notes_of(d)
        row = rows.setdefault(number, {
            "number": number, "status": "live" if number == live else notes.get(rel.STATUS, ""),
            "created": notes.get(rel.CREATED), "deployed": notes.get(rel.DEPLOYED),
            "image": notes.get(rel.IMAGE), "replicas": 0, "failure": notes.get(rel.FAILURE)})
        row["replicas"] += int((d.get("status") or {}).get("availableReplicas", 0) or 0)
    for job in rollout.cluster.list("Job", rel.selected_labels(rollout.app, rollout.env)):
        number = rel.release_of(job) or 0
        failed = [c for c in (job.get("status") or {}).get("conditions") or []
                  if c.get("type") == "Failed" and c.get("status") == "True"]
        if number not in rows and failed:
            rows[number] = {"number": number, "status": "refused", "created": None,
                            "deployed": None, "image": None, "replicas": 0,
                            "failure": "release command failed: "
                            + str(failed[0].get("message") or failed[0].get("reason") or "")}
    return sorted(rows.values(), key=lambda r: r["number"], reverse=True)


def status(rollout: Rollout) -> dict[str, Any]:
    """The live release, each kept Deployment and each pod of the app."""
    rollout.check_namespace()
    live = rollout.live()
    deployments = [{
        "deployment": d["metadata"]["name"], "release": rel.release_of(d),
        "live": rel.release_of(d) == live,
        "replicas": (d.get("spec") or {}).get("replicas", 1),
        "available": int((d.get("status") or {}).get("availableReplicas", 0) or 0),
        "ready": available(d), "status": rel.notes_of(d).get(rel.STATUS)}
        for d in sorted(rollout.deployments(), key=lambda d: rel.release_of(d) or 0)]
    pods = [{"pod": p["metadata"]["name"],
             "release": (p["metadata"].get("labels") or {}).get(rel.RELEASE),
             "phase": (p.get("status") or {}).get("phase"),
             "restarts": sum(int(c.get("restartCount", 0)) for c in
                             (p.get("status") or {}).get("containerStatuses") or [])}
            for p in pods_of(rollout.cluster, rollout.app, rollout.env)]
    return {"app": rollout.app, "env": rollout.env, "context": rollout.cluster.context,
            "namespace": rollout.cluster.namespace, "live": live, "deployments": deployments,
            "pods": pods}


def pods_of(cluster: Cluster, app: str, env: str, *, process: str | None = None,
            release: int | None = None) -> list[Obj]:
    labels = rel.selected_labels(app, env)
    if process:
        labels["app.kubernetes.io/component"] = process
    if release is not None:
        labels[rel.RELEASE] = str(release)
    return sorted(cluster.list("Pod", labels), key=lambda p: p["metadata"]["name"])


def logs(rollout: Rollout, *, process: str | None, release: int | None, lines: int,
         grep: str | None) -> list[Row]:
    """The last `lines` of each pod's log, as rows {pod, release, line}."""
    try:
        pattern = re.compile(grep) if grep else None
    except re.error as exc:
        raise ConfigError(f"--grep {grep!r}: not a regular expression ({exc})") from None
    out: list[Row] = []
    rollout.check_namespace()
    for pod in pods_of(rollout.cluster, rollout.app, rollout.env, process=process,
                       release=release):
        name = pod["metadata"]["name"]
        number = (pod["metadata"].get("labels") or {}).get(rel.RELEASE)
        for line in rollout.cluster.log(name, tail=lines).splitlines():
            if pattern is None or pattern.search(line):
                out.append({"pod": name, "release": number, "line": line})
    return out
