"""[accessories] and [backups] as Kubernetes objects: a StatefulSet with its PVC and Service
per in-cluster accessory (its password only as a Secret reference), a NetworkPolicy that
admits only the app's own pods, and a CronJob per accessory for [backups] schedule.
An external accessory gets none of these: its URL is a key of the app's Secret.
Pure: no I/O."""

from __future__ import annotations

from typing import Any

from headway.kube.objects import (
    ACCESSORY_IMAGES,
    DB_UID,
    Build,
    Item,
    Obj,
    accessory_env,
    auth_name,
    cron,
    labels,
    meta,
    pod_security,
    security,
    selector,
)
from headway.spec.models import AccessorySpec

DATA = {"postgres": "/var/lib/postgresql/data", "redis": "/data"}


def image(b: Build, name: str, acc: AccessorySpec) -> str:
    repo, default, _ = ACCESSORY_IMAGES[acc.type]
    return str(b.values.string(f"accessories.{name}.image", f"{repo}:{acc.version or default}"))


def _server(b: Build, name: str, acc: AccessorySpec) -> Obj:
    _, _, port = ACCESSORY_IMAGES[acc.type]
    password = {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {
        "name": auth_name(b.app, name), "key": "password"}}}
    mounts = [{"name": "data", "mountPath": DATA[acc.type]}, {"name": "tmp", "mountPath": "/tmp"}]
    if acc.type == "postgres":
        user = acc.user or b.app.replace("-", "_")
        database = acc.database or b.app.replace("-", "_")
        env: list[Obj] = [{**password, "name": "POSTGRES_PASSWORD"},
                          {"name": "POSTGRES_USER", "value": user},
                          {"name": "POSTGRES_DB", "value": database},
                          {"name": "PGDATA", "value": f"{DATA['postgres']}/pgdata"}]
        mounts.append({"name": "run", "mountPath": "/var/run/postgresql"})
        probe: Obj = {"exec": {"command": ["pg_isready", "-U", user, "-d", database]}}
        command: dict[str, Any] = {}
    else:  # the password reaches redis-server through a file, not its argv
        env = [{**password, "name": "REDIS_PASSWORD"}, {**password, "name": "REDISCLI_AUTH"}]
        probe = {"exec": {"command": ["redis-cli", "ping"]}}
        command = {"command": ["/bin/sh", "-c"], "args": [
            ('printf "requirepass %s\\n" "$REDIS_PASSWORD" > /tmp/redis.conf && '
            "exec redis-server /tmp/redis.conf --dir /data --appendonly yes")]}
    return {"name": acc.type, "image": image(b, name, acc), **command, "env": env,
            "ports": [{"name": acc.type, "containerPort": port, "protocol": "TCP"}],
            "readinessProbe": {**probe, "periodSeconds": 5, "timeoutSeconds": 3},
            "livenessProbe": {**probe, "periodSeconds": 10, "timeoutSeconds": 5,
                              "failureThreshold": 6},
            "resources": b.values.block(f"accessories.{name}.resources", {}),
            "securityContext": security(), "volumeMounts": mounts}


def stateful_set(b: Build, name: str, acc: AccessorySpec) -> Obj:
    component = name
    volumes: list[Obj] = [{"name": "tmp", "emptyDir": {}}]
    if acc.type == "postgres":
        volumes.append({"name": "run", "emptyDir": {}})
    pod = {"serviceAccountName": b.app, "automountServiceAccountToken": False,
           "securityContext": pod_security(b, f"accessories.{name}.runAsUser", DB_UID),
           "terminationGracePeriodSeconds": 60,
           "containers": [_server(b, name, acc)], "volumes": volumes}
    claim = {"metadata": {"name": "data"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {
            "storage": b.values.string(f"accessories.{name}.size", b.spec.kubernetes.storage)}}}}
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": meta(b.app, f"{b.app}-{name}", component),
            "spec": {"serviceName": f"{b.app}-{name}", "replicas": 1,
                     "selector": {"matchLabels": selector(b.app, component)},
                     "template": {"metadata": {"labels": labels(b.app, component)}, "spec": pod},
                     "volumeClaimTemplates": [claim]}}


def headless_service(b: Build, name: str, acc: AccessorySpec) -> Obj:
    _, _, port = ACCESSORY_IMAGES[acc.type]
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": meta(b.app, f"{b.app}-{name}", name),
            "spec": {"clusterIP": "None", "selector": selector(b.app, name),
                     "ports": [{"name": acc.type, "port": port, "targetPort": acc.type,
                                "protocol": "TCP"}]}}


def network_policy(b: Build, name: str, acc: AccessorySpec) -> Obj:
    _, _, port = ACCESSORY_IMAGES[acc.type]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": meta(b.app, f"{b.app}-{name}", name),
            "spec": {"podSelector": {"matchLabels": selector(b.app, name)},
                     "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {
                         "app.kubernetes.io/name": b.app}}}],
                         "ports": [{"protocol": "TCP", "port": port}]}]}}


def backup_claim(b: Build) -> Obj:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": meta(b.app, f"{b.app}-backups", "backup"),
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {
                "storage": b.values.string("backups.size", b.spec.kubernetes.storage)}}}}


def _backup_script(name: str, acc: AccessorySpec, keep: int) -> str:
    # $$( : a literal $( that the kubelet does not take for a $(VAR) reference
    target = f'f=/backups/{name}-$$(date -u +%Y%m%d-%H%M%S)'
    if acc.type == "postgres":
        dump = f'pg_dump --format=custom --file="$f.tmp" "${acc.env_name}"'
        suffix = "dump"
    else:
        dump = ('redis-cli -u "$' + acc.env_name + '" --rdb "$f.tmp"' if acc.external
                else 'redis-cli -h "$HOST" -p "$PORT" --rdb "$f.tmp"')
        suffix = "rdb"
    return (f"set -eu; {target}.{suffix}; {dump}; mv \"$f.tmp\" \"$f\"; "
            f"ls -1t /backups/{name}-*.{suffix} | tail -n +{keep + 1} | xargs -r rm --")


def backup_cron(b: Build, name: str, acc: AccessorySpec, every: float) -> Obj:
    env = accessory_env(b, name, acc)
    if acc.type == "redis" and not acc.external:
        _, _, port = ACCESSORY_IMAGES["redis"]
        password = next(e for e in env if "valueFrom" in e)
        env = [{**password, "name": "REDISCLI_AUTH"}, {"name": "HOST", "value": f"{b.app}-{name}"},
               {"name": "PORT", "value": str(port)}]
    c = {"name": "backup", "image": image(b, name, acc),
         "command": ["/bin/sh", "-c", _backup_script(name, acc, b.spec.backups.keep_last)],
         "env": env, "securityContext": security(),
         "volumeMounts": [{"name": "backups", "mountPath": "/backups"},
                          {"name": "tmp", "mountPath": "/tmp"}]}
    pod = {"serviceAccountName": b.app, "automountServiceAccountToken": False,
           "restartPolicy": "Never",
           "securityContext": pod_security(b, f"accessories.{name}.runAsUser", DB_UID),
           "containers": [c],
           "volumes": [{"name": "backups", "persistentVolumeClaim": {
               "claimName": f"{b.app}-backups"}}, {"name": "tmp", "emptyDir": {}}]}
    return {"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": meta(b.app, f"{b.app}-backup-{name}", "backup"),
            "spec": {"schedule": b.values.string("backups.schedule", cron(every)),
                     "concurrencyPolicy": "Forbid", "successfulJobsHistoryLimit": 3,
                     "failedJobsHistoryLimit": 3,
                     "jobTemplate": {"spec": {"backoffLimit": 1, "template": {
                         "metadata": {"labels": labels(b.app, "backup")}, "spec": pod}}}}}


def items(b: Build) -> list[Item]:
    out: list[Item] = []
    for name, acc in b.spec.accessories.items():
        if acc.external:
            continue
        out += [Item(f"accessory-{name}.yaml", stateful_set(b, name, acc)),
                Item(f"accessory-{name}.yaml", headless_service(b, name, acc)),
                Item(f"accessory-{name}.yaml", network_policy(b, name, acc))]
    every = b.spec.backups.schedule
    if every and b.spec.accessories:
        out.append(Item("backups.yaml", backup_claim(b)))
        out += [Item("backups.yaml", backup_cron(b, name, acc, every))
                for name, acc in b.spec.accessories.items()]
    return out
