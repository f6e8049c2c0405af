"""headway.toml -> Kubernetes objects (plain dicts), one builder per kind. Tunables go
through `Values`, so kustomize and Helm get the same objects. Secret values never enter
here: only Secret names and keys (secretKeyRef), never a Secret object with data.
Pure: no I/O, no clock."""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from headway.builder.common import PORT
from headway.errors import ConfigError
from headway.kube.values import Values
from headway.spec.models import AccessorySpec, ProcessSpec, Spec

Obj = dict[str, Any]
APP_UID = 10001  # the user of the images Headway generates (builder/python.py)
DB_UID = 999  # postgres and redis official images
PRESTOP_SLEEP = 5  # seconds for endpoint removal to reach every ingress before SIGTERM
SERVICE_PORT = 80
ACCESSORY_IMAGES = {"postgres": ("postgres", "16", 5432), "redis": ("redis", "7", 6379)}
IMAGE_TOKEN = "@@image@@"


@dataclass(frozen=True)
class Image:
    """The release's image in [registry]: a digest when known, else a tag."""

    repository: str
    tag: str = "latest"
    digest: str | None = None

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}" if self.digest else f"{self.repository}:{self.tag}"


@dataclass(frozen=True)
class Item:
    """One object and the file it goes in; `when`: a values path that enables it (Helm)."""

    file: str
    body: Obj
    when: str | None = None


@dataclass
class Build:
    """What every builder reads: the spec, the tunables and the secret names (no values)."""

    spec: Spec
    values: Values
    image: Image
    secret_names: list[str] = field(default_factory=list)
    optional_secrets: frozenset[str] = frozenset()  # set in some environments' stores only

    @property
    def app(self) -> str:
        return self.spec.app.name


# names and labels ---------------------------------------------------------------------------
def secrets_name(app: str) -> str:
    return f"{app}-secrets"


def auth_name(app: str, accessory: str) -> str:
    return f"{app}-{accessory}-auth"


def config_name(app: str) -> str:
    return f"{app}-env"


def labels(app: str, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": app, "app.kubernetes.io/component": component,
            "app.kubernetes.io/part-of": app, "app.kubernetes.io/managed-by": "headway"}


def selector(app: str, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": app, "app.kubernetes.io/component": component}


def meta(app: str, name: str, component: str, **annotations: str) -> Obj:
    out: Obj = {"name": name, "labels": labels(app, component)}
    if annotations:
        out["annotations"] = dict(annotations)
    return out


def dns_name(text: str) -> str:
    """A DNS-1123 label from any text (an image tag, say): lowercase, dashes, 63 at most."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return name[:63].rstrip("-") or "x"


# conversions ----------------------------------------------------------------------------------
def memory(value: str) -> str:
    """headway's "512m" (podman: MiB) -> Kubernetes "512Mi"."""
    number, unit = re.fullmatch(r"(\d+)([kmg]?)", value).groups()  # type: ignore[union-attr]
    return number + {"k": "Ki", "m": "Mi", "g": "Gi", "": ""}[unit]


def cpu(value: float) -> str:
    return f"{max(1, round(value * 1000))}m"


def seconds(value: float) -> int:
    return max(1, math.ceil(value))


def args(command: str) -> list[str]:
    """The command line as an argv; $VAR and ${VAR} become Kubernetes' $(VAR), which the
    kubelet expands from the container's env as headway expands them from the instance's."""
    return [re.sub(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))",
                   lambda m: f"$({m.group(1) or m.group(2)})", word)
            for word in shlex.split(command)]


def cron(every: float) -> str:
    """[backups] schedule (a duration) -> a cron expression as close as cron allows."""
    minutes = max(1, round(every / 60))
    if minutes < 60:
        return f"*/{minutes} * * * *" if 60 % minutes == 0 else "0 * * * *"
    hours = round(minutes / 60)
    if hours < 24:
        return f"0 */{hours} * * *" if 24 % hours == 0 else "0 0 * * *"
    days = round(hours / 24)
    return "30 3 * * *" if days == 1 else f"30 3 */{days} * *"


# checks -----------------------------------------------------------------------------------------
def check(spec: Spec) -> None:
    """What Kubernetes would refuse or silently ignore, as a ConfigError naming the key."""
    for name, proc in spec.processes.items():
        if proc.autoscale and not proc.cpus:
            raise ConfigError(
                f"processes.{name}.autoscale: a HorizontalPodAutoscaler needs a CPU request, and "
                f"processes.{name}.cpus is not set (the HPA would never scale: its target is a "
                "share of the request)",
                hint=f"set processes.{name}.cpus, e.g. cpus = 0.5 (and memory = \"512m\")")
    for name in spec.accessories:
        if name in spec.processes:
            raise ConfigError(f"accessories.{name}: a process has the same name, and both would "
                              f"be {spec.app.name}-{name}", hint="rename the accessory")
    for name in spec.volumes:
        if name in spec.processes or name in spec.accessories:
            raise ConfigError(f"volumes.{name}: a process or accessory has the same name",
                              hint="rename the volume")


# the app's containers -------------------------------------------------------------------------
def accessory_env(b: Build, name: str, acc: AccessorySpec) -> list[Obj]:
    """The variables an accessory gives the app: from a Secret when it is external, else
    composed from its in-cluster Service and its password Secret ($(VAR) expansion)."""
    out: list[Obj] = []
    wanted = {acc.env_name: "url", **acc.env}
    if acc.external:
        return [_secret_ref(var, secrets_name(b.app), var) for var in wanted]
    var = f"HEADWAY_{name.upper().replace('-', '_')}_PASSWORD"
    out.append(_secret_ref(var, auth_name(b.app, name), "password"))
    _, _, port = ACCESSORY_IMAGES[acc.type]
    host = f"{b.app}-{name}"
    user = acc.user or b.app.replace("-", "_")
    database = acc.database or b.app.replace("-", "_")
    if acc.type == "postgres":
        url = f"postgresql://{user}:$({var})@{host}:{port}/{database}"
    else:
        url, user, database = f"redis://:$({var})@{host}:{port}/0", "", "0"
    parts = {"url": url, "host": host, "port": str(port), "user": user,
             "password": f"$({var})", "database": database}
    out += [{"name": env, "value": parts[part]} for env, part in wanted.items()]
    return out


def _secret_ref(var: str, secret: str, key: str, *, optional: bool = False) -> Obj:
    ref: Obj = {"name": secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": var, "valueFrom": {"secretKeyRef": ref}}


def container_env(b: Build, *, web: bool) -> list[Obj]:
    env: list[Obj] = [{"name": "HOST", "value": "0.0.0.0"}]
    if web:
        env.append({"name": "PORT", "value": str(PORT)})
    env += [_secret_ref(n, secrets_name(b.app), n, optional=n in b.optional_secrets)
            for n in b.secret_names]
    for name, acc in b.spec.accessories.items():
        env += accessory_env(b, name, acc)
    return env


def security(read_only: bool = True) -> Obj:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": read_only,
            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}


def pod_security(b: Build, uid_path: str, uid: int) -> Obj:
    user = b.values.scalar(uid_path, uid)
    return {"runAsNonRoot": True, "runAsUser": user, "runAsGroup": user, "fsGroup": user,
            "seccompProfile": {"type": "RuntimeDefault"}}


def resources(b: Build, name: str, proc: ProcessSpec) -> Any:
    amounts: dict[str, str] = {}
    if proc.cpus:
        amounts["cpu"] = cpu(proc.cpus)
    if proc.memory:
        amounts["memory"] = memory(proc.memory)
    limits = {k: v for k, v in amounts.items() if k == "memory"}  # a CPU limit only throttles
    value = {"requests": amounts, "limits": limits} if amounts else {}
    return b.values.block(f"processes.{name}.resources", value)


def probes(b: Build, name: str, proc: ProcessSpec) -> Obj:
    """Only web listens ($PORT); a worker is healthy while it runs, as under Headway."""
    health = proc.health
    if name != "web" or not health.path:
        return {}
    period, timeout = seconds(health.interval), seconds(health.timeout)
    check: Obj = ({"httpGet": {"path": health.path, "port": "http"}} if health.expect == "2xx"
                  else {"tcpSocket": {"port": "http"}})  # any answer below 500: serving at all
    p = f"processes.{name}.probes"
    return {
        "startupProbe": {**check, "periodSeconds": period, "timeoutSeconds": timeout,
                         "failureThreshold": b.values.scalar(
                             f"{p}.startupFailures", seconds(b.spec.deploy.timeout / period))},
        "readinessProbe": {**check, "periodSeconds": period, "timeoutSeconds": timeout,
                           "successThreshold": health.healthy_threshold, "failureThreshold": 3},
        "livenessProbe": {**check, "periodSeconds": period, "timeoutSeconds": timeout,
                          "failureThreshold": b.values.scalar(
                              f"{p}.livenessFailures", seconds(health.restart_after / period))},
    }


def app_container(b: Build, name: str, command: str, *, web: bool) -> Obj:
    c: Obj = {"name": name, "image": IMAGE_TOKEN if b.values.template else b.image.reference,
              "imagePullPolicy": "IfNotPresent", "args": args(command),
              "env": container_env(b, web=web),
              "envFrom": [{"configMapRef": {"name": config_name(b.app)}}],
              "securityContext": security(),
              "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]
              + [{"name": f"volume-{v}", "mountPath": f"/app/{path.strip('/')}"}
                 for v, path in b.spec.volumes.items()]}
    if web:
        c["ports"] = [{"name": "http", "containerPort": PORT, "protocol": "TCP"}]
    return c


def pod_volumes(b: Build) -> list[Obj]:
    return [{"name": "tmp", "emptyDir": {}}] + [
        {"name": f"volume-{v}", "persistentVolumeClaim": {"claimName": f"{b.app}-{v}"}}
        for v in b.spec.volumes]


def pod_spec(b: Build, containers: list[Obj], **more: Any) -> Obj:
    spec: Obj = {"serviceAccountName": b.app, "automountServiceAccountToken": False,
                 "securityContext": pod_security(b, "securityContext.runAsUser", APP_UID),
                 "containers": containers, "volumes": pod_volumes(b), **more}
    if b.spec.registry.username:
        spec["imagePullSecrets"] = [{"name": f"{b.app}-registry"}]
    return spec


def deployment(b: Build, name: str, proc: ProcessSpec) -> Obj:
    web = name == "web"
    deploy = b.spec.deploy
    c = app_container(b, name, proc.command, web=web)
    c["resources"] = resources(b, name, proc)
    c.update(probes(b, name, proc))
    sleep = b.values.string("preStopSleep", str(PRESTOP_SLEEP))
    c["lifecycle"] = {"preStop": {"exec": {"command": ["sleep", sleep]}}}
    grace = b.values.scalar(f"processes.{name}.terminationGracePeriodSeconds",
                            seconds(proc.stop_timeout) + PRESTOP_SLEEP)
    surge = "100%" if deploy.strategy == "blue-green" else deploy.max_surge
    spec: Obj = {
        "revisionHistoryLimit": deploy.keep_releases,
        "selector": {"matchLabels": selector(b.app, name)},
        "strategy": {"type": "RollingUpdate",
                     "rollingUpdate": {"maxSurge": surge, "maxUnavailable": 0}},
        "template": {"metadata": {"labels": labels(b.app, name)},
                     "spec": pod_spec(b, [c], terminationGracePeriodSeconds=grace)}}
    if not proc.autoscale:
        spec = {"replicas": b.values.scalar(f"processes.{name}.replicas", proc.replicas), **spec}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": meta(b.app, f"{b.app}-{name}", name,
                             **{"headway.dev/strategy": deploy.strategy}),
            "spec": spec}


def service(b: Build, name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": meta(b.app, f"{b.app}-{name}", name),
            "spec": {"type": "ClusterIP", "selector": selector(b.app, name),
                     "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http",
                                "protocol": "TCP"}]}}


def ingress(b: Build) -> Obj:
    hosts = b.values.block("ingress.hosts", list(b.spec.router.hosts))
    kube = b.spec.kubernetes
    issuer = kube.cluster_issuer or ("letsencrypt" if getattr(b.spec.router, "tls", None)
                                     == "acme" else None)
    annotations = {"cert-manager.io/cluster-issuer": b.values.string("ingress.clusterIssuer",
                                                                     issuer)} if issuer else {}
    backend = {"service": {"name": f"{b.app}-web", "port": {"number": SERVICE_PORT}}}
    spec: Obj = {"rules": [{"host": h, "http": {"paths": [
        {"path": "/", "pathType": "Prefix", "backend": backend}]}} for h in b.spec.router.hosts]}
    if b.values.template:  # one rule per host, from values
        spec["rules"] = "@@rules@@"
    if kube.ingress_class:
        spec["ingressClassName"] = b.values.string("ingress.className", kube.ingress_class)
    if issuer:
        spec["tls"] = [{"hosts": hosts, "secretName": f"{b.app}-tls"}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": meta(b.app, b.app, "web", **annotations), "spec": spec}


def hpa(b: Build, name: str, proc: ProcessSpec) -> Obj:
    scale = proc.autoscale
    assert scale is not None
    p = f"processes.{name}.autoscale"
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": meta(b.app, f"{b.app}-{name}", name),
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                        "name": f"{b.app}-{name}"},
                     "minReplicas": b.values.scalar(f"{p}.min", scale.min),
                     "maxReplicas": b.values.scalar(f"{p}.max", scale.max),
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                         "type": "Utilization",
                         "averageUtilization": b.values.scalar(f"{p}.cpu", scale.cpu)}}}]}}


def pdb(b: Build, name: str) -> Obj:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": meta(b.app, f"{b.app}-{name}", name),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(b.app, name)}}}


def network_policy(b: Build, name: str, *, web: bool) -> Obj:
    """web: only the ingress controller's namespace, on the app's port; workers: nothing."""
    ingress_rules: list[Obj] = []
    if web:
        ns = b.values.string("networkPolicy.ingressNamespace", b.spec.kubernetes.ingress_namespace)
        ingress_rules = [{"from": [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": ns}}}],
            "ports": [{"protocol": "TCP", "port": PORT}]}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": meta(b.app, f"{b.app}-{name}", name),
            "spec": {"podSelector": {"matchLabels": selector(b.app, name)},
                     "policyTypes": ["Ingress"], "ingress": ingress_rules}}


def service_account(b: Build) -> Obj:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": meta(b.app, b.app, "app"), "automountServiceAccountToken": False}


def config_map(b: Build, data: dict[str, str]) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": meta(b.app, config_name(b.app), "app"),
            "data": b.values.block("env", dict(sorted(data.items())))}


def volume_claim(b: Build, name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": meta(b.app, f"{b.app}-{name}", f"volume-{name}"),
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {
                "storage": b.values.string(f"volumes.{name}.size", b.spec.kubernetes.storage)}}}}


def release_job(b: Build, name: str, *, hook: bool) -> Obj:
    """The release command, once, before the new pods take traffic: a Helm pre-upgrade hook,
    or (kustomize) a Job applied and waited for before the Deployments."""
    command = b.spec.release.command
    assert command is not None
    c = app_container(b, "release", command, web=False)
    note = ("Helm runs this Job before it upgrades the Deployments, and stops if it fails"
            if hook else "apply and wait for this Job to complete before applying the "
            "Deployments: kubectl apply -k release/ && kubectl wait --for=condition=complete "
            "job/NAME, then kubectl apply -k . (see README.md)")
    annotations = {"headway.dev/run-before": note}
    if hook:
        annotations |= {"helm.sh/hook": "pre-install,pre-upgrade", "helm.sh/hook-weight": "0",
                        "helm.sh/hook-delete-policy": "before-hook-creation"}
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": meta(b.app, name, "release", **annotations),
            "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 86400,
                     "activeDeadlineSeconds": seconds(b.spec.release.timeout),
                     "template": {"metadata": {"labels": labels(b.app, "release")},
                                  "spec": pod_spec(b, [c], restartPolicy="Never")}}}
