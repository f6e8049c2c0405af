"""The kustomize layout: base/ (every long-running object), overlays/ENV/ (namespace, image,
the environment's variables, ExternalSecrets) and overlays/ENV/release/ (the release Job,
applied and waited for first). Returns {relative path: text}; the CLI writes them.
Pure: no I/O."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import yaml

from headway.kube import manifests
from headway.kube.objects import (
    Build,
    Image,
    Item,
    Obj,
    config_map,
    config_name,
    dns_name,
    release_job,
)
from headway.kube.values import Values
from headway.spec.models import Spec

KUSTOMIZATION = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
CONFIG_HASH = "headway.dev/config-hash"


@dataclass(frozen=True)
class Environment:
    """One overlay: what differs between environments."""

    name: str
    image: Image
    namespace: str
    variables: dict[str, str]


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: object) -> bool:  # no &id001 anchors: plain YAML
        return True


def dump(objects: list[Obj]) -> str:
    return "---\n".join(yaml.dump(o, Dumper=_Dumper, sort_keys=False, width=1000)
                         for o in objects)


def group(items: list[Item]) -> dict[str, list[Obj]]:
    files: dict[str, list[Obj]] = {}
    for item in items:
        files.setdefault(item.file, []).append(item.body)
    return files


def needed_first(file: str) -> bool:
    """What the release Job needs before it runs: its ServiceAccount, the accessories (a
    migration needs its database), the volumes."""
    return file in {"serviceaccount.yaml", "volumes.yaml"} or file.startswith("accessory-")


def release_name(app: str, image: Image) -> str:
    """A Job is immutable: one per image, so a new release gets a new Job."""
    version = image.digest.split(":")[-1][:12] if image.digest else image.tag
    return dns_name(f"{app}-release-{version}")


def files(spec: Spec, envs: list[Environment], *, secret_names: list[str],
          optional: frozenset[str]) -> dict[str, str]:
    base_image = envs[0].image if envs else Image(spec.app.name)
    b = Build(spec, Values(template=False), Image(base_image.repository), secret_names, optional)
    out: dict[str, str] = {}
    grouped = group(manifests.base_items(b))
    needs = [f for f in grouped if needed_first(f)]
    for file, objects in grouped.items():
        out[f"base/{'needs/' if file in needs else ''}{file}"] = dump(objects)
    out["base/needs/kustomization.yaml"] = yaml.safe_dump(
        {**KUSTOMIZATION, "resources": needs}, sort_keys=False)
    out["base/kustomization.yaml"] = yaml.safe_dump(
        {**KUSTOMIZATION, "resources": ["needs", *(f for f in grouped if f not in needs)]},
        sort_keys=False)
    for env in envs:
        out |= overlay(spec, b, env)
    return out


def overlay(spec: Spec, b: Build, env: Environment) -> dict[str, str]:
    where = f"overlays/{env.name}"
    app = spec.app.name
    data = dict(sorted(env.variables.items()))
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": config_name(app)},
              "data": data}
    # a changed variable changes the pods' template, so they roll like a new release
    rolls = [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": f"{app}-{p}"},
              "spec": {"template": {"metadata": {"annotations": {CONFIG_HASH: digest}}}}}
             for p in spec.processes]
    image = {"name": env.image.repository}
    image |= {"digest": env.image.digest} if env.image.digest else {"newTag": env.image.tag}
    resources = ["../../base"]
    out: dict[str, str] = {f"{where}/config.yaml": dump([config, *rolls])}
    store = spec.kubernetes.external_secrets
    env_build = Build(spec, Values(template=False), env.image, b.secret_names, b.optional_secrets)
    if store and manifests.secret_keys(env_build):
        out[f"{where}/externalsecrets.yaml"] = dump(
            manifests.external_secrets(env_build, store, f"{app}-{env.name}"))
        resources.append("externalsecrets.yaml")
    out[f"{where}/kustomization.yaml"] = yaml.safe_dump({
        **KUSTOMIZATION, "namespace": env.namespace, "resources": resources,
        "commonAnnotations": {"headway.dev/environment": env.name},
        "images": [image],
        "patches": [{"path": "config.yaml"}]}, sort_keys=False)
    if spec.release.command:
        job = release_job(env_build, release_name(app, env.image), hook=False)
        job["spec"]["template"]["metadata"]["annotations"] = {CONFIG_HASH: digest}
        full = {**config, "metadata": config_map(env_build, {})["metadata"]}
        out[f"{where}/release/job.yaml"] = dump([full, job])
        first = ["../../../base/needs", "job.yaml"]
        if "externalsecrets.yaml" in resources:
            out[f"{where}/release/externalsecrets.yaml"] = out[f"{where}/externalsecrets.yaml"]
            first.append("externalsecrets.yaml")
        out[f"{where}/release/kustomization.yaml"] = yaml.safe_dump({
            **KUSTOMIZATION, "namespace": env.namespace, "resources": first,
            "commonAnnotations": {"headway.dev/environment": env.name}}, sort_keys=False)
    return out
