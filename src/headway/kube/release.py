"""One release's objects for runtime = "kubernetes", made by objects.py's builders (the same
objects `headway generate kubernetes` writes), renamed per release: a Deployment
APP-PROC-rN per process (label headway.dev/release=N), the release Job APP-release-rN, and
the release's own ConfigMap APP-env-rN and Secret APP-secrets-rN (so a rollback gets the
variables and secrets it was deployed with). The web Service (and HPAs) select one release:
that is the switch (during a canary the Service selects both: headway.kube.canary). Also the retention rules, as a pure function of what the cluster holds.
The Secret is the only object that may carry a secret value. Pure: no I/O, no clock."""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import dataclass

from headway.errors import ConfigError
from headway.kube import manifests
from headway.kube.objects import (
    Build,
    Image,
    Obj,
    check,
    config_map,
    config_name,
    deployment,
    hpa,
    meta,
    release_job,
    secrets_name,
    service,
)
from headway.kube.values import Values
from headway.spec.models import Spec

RELEASE = "headway.dev/release"
ENVIRONMENT = "headway.dev/environment"
STATUS = "headway.dev/status"  # starting | active | previous | retired | failed
IMAGE = "headway.dev/image"
REPLICAS = "headway.dev/replicas"  # what a rollback scales a kept Deployment back up to
CREATED = "headway.dev/created"
DEPLOYED = "headway.dev/deployed"
RETIRED = "headway.dev/retired"  # when it stopped taking traffic: keep_previous counts from it
FAILURE = "headway.dev/failure"
FINGERPRINT = "headway.dev/fingerprint"
SWITCHED = ("Service", "HorizontalPodAutoscaler")  # applied when the release goes live


@dataclass
class ReleaseObjects:
    """What a deploy applies, in this order."""

    shared: list[Obj]  # kept across releases: ServiceAccount, PDB, NetworkPolicy, Ingress, PVC
    config: list[Obj]  # this release's ConfigMap and Secret
    job: Obj | None  # the release command
    deployments: list[Obj]
    switch: list[Obj]  # the web Service (selector: this release) and HPAs

    def all(self) -> list[Obj]:
        return [*self.shared, *self.config, *([self.job] if self.job else []),
                *self.deployments, *self.switch]


def refuse_unsupported(spec: Spec, config: str) -> None:
    """What runtime = "kubernetes" does not do (yet), before anything is read or applied."""
    strategy = spec.deploy.strategy
    if strategy not in {"blue-green", "canary"}:
        raise ConfigError(f"{config}: deploy.strategy = {strategy!r} is not built for runtime "
                          "\"kubernetes\" (blue-green: one Deployment per release, the "
                          "Service switched once it is Available; or canary)",
                          hint='set deploy.strategy = "blue-green" (the default)')
    if strategy == "canary" and not spec.observe.prometheus_url:
        raise ConfigError(f"{config}: deploy.strategy = \"canary\" with runtime \"kubernetes\" "
                          "needs [observe] prometheus_url: the judge reads both releases' "
                          "requests from Prometheus", hint='e.g. prometheus_url = '
                          '"http://prometheus.monitoring:9090" (a port-forward works too)')
    for name, acc in spec.accessories.items():
        if not acc.external:
            raise ConfigError(f"{config}: accessories.{name}: runtime \"kubernetes\" runs no "
                              "accessory in the cluster (an in-cluster database needs its "
                              "password made and kept, not built)",
                              hint=f"run it outside, set accessories.{name}.external = true and "
                              f"headway secrets set {acc.env_name}")
    if "web" not in spec.processes:
        raise ConfigError(f"{config}: runtime \"kubernetes\" needs a [processes.web]")
    try:
        check(spec)  # what the API would refuse or ignore (an HPA without a CPU request)
    except ConfigError as exc:
        exc.message = f"{config}: {exc.message}"
        raise


def deployment_name(app: str, process: str, number: int) -> str:
    return f"{app}-{process}-r{number}"


def config_name_of(app: str, number: int) -> str:
    return f"{config_name(app)}-r{number}"


def secret_name_of(app: str, number: int) -> str:
    return f"{secrets_name(app)}-r{number}"


def job_name(app: str, number: int) -> str:
    return f"{app}-release-r{number}"


def selected_labels(app: str, env: str) -> dict[str, str]:
    """What every list of this app's releases selects by."""
    return {"app.kubernetes.io/name": app, ENVIRONMENT: env}


def _pod_refs(template: Obj, app: str, number: int) -> None:
    """The pod reads this release's ConfigMap and Secret, not the generator's shared ones."""
    for container in template["spec"]["containers"]:
        for source in container.get("envFrom", []):
            if source.get("configMapRef", {}).get("name") == config_name(app):
                source["configMapRef"]["name"] = config_name_of(app, number)
        for var in container.get("env", []):
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref and ref["name"] == secrets_name(app):
                ref["name"] = secret_name_of(app, number)


def _tag(obj: Obj, env: str, number: int, *, template: Obj | None = None) -> Obj:
    extra = {RELEASE: str(number), ENVIRONMENT: env}
    obj["metadata"]["labels"].update(extra)
    if template is not None:
        template["metadata"]["labels"].update(extra)
    return obj


def build(spec: Spec, env: str, number: int, image: Image, *, secrets: dict[str, str],
          created: str, fingerprint: str) -> ReleaseObjects:
    """Every object of release `number`; `secrets`: name -> value, into the Secret only."""
    app = spec.app.name
    b = Build(spec, Values(template=False), image, sorted(secrets))
    shared = []
    for item in manifests.base_items(b):
        kind = item.body["kind"]
        if kind in {"Deployment", *SWITCHED, "ConfigMap"}:
            continue  # per release, or applied at the switch
        obj = copy.deepcopy(item.body)
        obj["metadata"]["labels"][ENVIRONMENT] = env
        shared.append(obj)
    config = config_map(b, spec.environment(env))
    config["metadata"]["name"] = config_name_of(app, number)
    objs = [_tag(config, env, number)]
    if secrets:
        objs.append(_tag(secret(app, secret_name_of(app, number), secrets), env, number))
    if spec.registry.username and spec.registry.password_secret in secrets:
        objs.append(_tag(pull_secret(app, spec, secrets[spec.registry.password_secret]),
                         env, number))
    job = None
    if spec.release.command:
        job = release_job(b, job_name(app, number), hook=False)
        job["metadata"]["annotations"] = {"headway.dev/run-before": "headway deploy waits for "
                                          "this Job before it starts the release's Deployments"}
        _pod_refs(job["spec"]["template"], app, number)
        _tag(job, env, number, template=job["spec"]["template"])
    deployments = []
    for process, proc in spec.processes.items():
        obj = deployment(b, process, proc)
        obj["metadata"]["name"] = deployment_name(app, process, number)
        obj["metadata"]["annotations"] |= {
            IMAGE: image.reference, STATUS: "starting", CREATED: created,
            REPLICAS: str(proc.autoscale.min if proc.autoscale else proc.replicas),
            FINGERPRINT: fingerprint}
        obj["spec"]["selector"]["matchLabels"][RELEASE] = str(number)
        template = obj["spec"]["template"]
        _pod_refs(template, app, number)
        if image.tag == "latest" and not image.digest:  # a moving tag: pull it every time
            template["spec"]["containers"][0]["imagePullPolicy"] = "Always"
        deployments.append(_tag(obj, env, number, template=template))
    return ReleaseObjects(shared, objs, job, deployments, switch(spec, env, number))


def switch(spec: Spec, env: str, number: int) -> list[Obj]:
    """The web Service selecting release `number`, and the HPAs scaling its Deployments."""
    app = spec.app.name
    b = Build(spec, Values(template=False), Image(app))
    svc = service(b, "web")
    svc["spec"]["selector"][RELEASE] = str(number)
    svc["metadata"]["labels"][ENVIRONMENT] = env
    out = [svc]
    for process, proc in spec.processes.items():
        if proc.autoscale:
            obj = hpa(b, process, proc)
            obj["spec"]["scaleTargetRef"]["name"] = deployment_name(app, process, number)
            obj["metadata"]["labels"][ENVIRONMENT] = env
            out.append(obj)
    return out


def secret(app: str, name: str, values: dict[str, str]) -> Obj:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta(app, name, "secrets"),
            "type": "Opaque", "stringData": dict(sorted(values.items()))}


def pull_secret(app: str, spec: Spec, password: str) -> Obj:
    """imagePullSecrets of the pods (objects.pod_spec names it APP-registry)."""
    server, user = str(spec.registry.server), str(spec.registry.username)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    config = {"auths": {server: {"username": user, "password": password, "auth": auth}}}
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": meta(app, f"{app}-registry", "secrets"),
            "type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": json.dumps(config)}}


def leaks(objects: list[Obj], secrets: dict[str, str]) -> list[str]:
    """Where an object other than a Secret contains a secret's value (must be nowhere), by
    the secret's name. Values under 8 characters are not looked for: "true" or the app's
    name would be found everywhere."""
    out = []
    for obj in objects:
        if obj["kind"] == "Secret":
            continue
        text = json.dumps(obj)
        out += [f"{obj['kind']} {obj['metadata']['name']} holds the value of {name}"
                for name, value in sorted(secrets.items())
                if len(value) >= 8 and (value in text or json.dumps(value)[1:-1] in text)]
    return out


# what the cluster holds ---------------------------------------------------------------------
@dataclass(frozen=True)
class Kept:
    """One release as its Deployments record it."""

    number: int
    status: str
    replicas: int  # now, summed over its Deployments
    retired: float | None  # epoch seconds


def release_of(obj: Obj) -> int | None:
    value = (obj.get("metadata", {}).get("labels") or {}).get(RELEASE, "")
    return int(value) if str(value).isdigit() else None


def notes_of(obj: Obj) -> dict[str, str]:
    return dict(obj.get("metadata", {}).get("annotations") or {})


def retention(kept: list[Kept], live: int | None, *, now: float, keep_previous: float,
              keep_releases: int) -> tuple[list[int], list[int]]:
    """(releases to scale to 0, releases to delete). The live one is never touched; the
    previous stays up `keep_previous` after it was retired; the newest `keep_releases` are
    kept (scaled to 0) for rollback, older ones deleted with their ConfigMap and Secret."""
    scale, delete = [], []
    newest_first = sorted(kept, key=lambda k: k.number, reverse=True)
    for index, release in enumerate(newest_first):
        if release.number == live:
            continue
        if index >= keep_releases:
            delete.append(release.number)
            continue
        warm = (release.status == "previous" and release.retired is not None
                and now - release.retired < keep_previous)
        if release.replicas > 0 and not warm:
            scale.append(release.number)
    return scale, delete
