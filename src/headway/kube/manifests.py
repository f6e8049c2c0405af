"""Every object of an app, grouped into files: the long-running objects (the kustomize base
and the chart's templates), and what differs per environment (the ConfigMap's variables, the
image, the release Job, ExternalSecrets). Pure: no I/O."""

from __future__ import annotations

from headway.kube import accessories
from headway.kube.objects import (
    Build,
    Item,
    Obj,
    auth_name,
    check,
    config_map,
    deployment,
    hpa,
    ingress,
    meta,
    network_policy,
    pdb,
    secrets_name,
    service,
    service_account,
    volume_claim,
)

EXTERNAL_SECRETS_API = "external-secrets.io/v1"


def base_items(b: Build) -> list[Item]:
    """The objects every environment shares, each in its file."""
    check(b.spec)
    out = [Item("serviceaccount.yaml", service_account(b)),
           Item("configmap.yaml", config_map(b, b.spec.environment("")))]
    for name, proc in b.spec.processes.items():
        web = name == "web"
        file = f"process-{name}.yaml"
        out.append(Item(file, deployment(b, name, proc)))
        if web:
            out.append(Item(file, service(b, name)))
        out += [Item(file, pdb(b, name)), Item(file, network_policy(b, name, web=web))]
        if proc.autoscale:
            enabled = f"processes.{name}.autoscale.enabled"
            b.values.scalar(enabled, True)
            out.append(Item(f"hpa-{name}.yaml", hpa(b, name, proc), when=enabled))
    if b.spec.router.hosts:
        b.values.scalar("ingress.enabled", True)
        out.append(Item("ingress.yaml", ingress(b), when="ingress.enabled"))
    out += [Item("volumes.yaml", volume_claim(b, name)) for name in b.spec.volumes]
    return out + accessories.items(b)


def secret_keys(b: Build) -> dict[str, list[str]]:
    """Secret name -> the keys the objects read from it (what must exist in the cluster)."""
    app_keys = list(b.secret_names)
    out: dict[str, list[str]] = {}
    for name, acc in b.spec.accessories.items():
        if acc.external:
            app_keys += [acc.env_name, *acc.env]
        else:
            out[auth_name(b.app, name)] = ["password"]
    if app_keys:
        out = {secrets_name(b.app): sorted(set(app_keys)), **out}
    return out


def external_secrets(b: Build, store: str, remote_key: str) -> list[Obj]:
    """External Secrets Operator objects that make every Secret the app reads, from `store`
    (a ClusterSecretStore): key NAME of Secret S comes from the store's `remote_key`
    (e.g. "shop-production"), property S/NAME. No value is written here."""
    out = []
    for target, keys in secret_keys(b).items():
        out.append({
            "apiVersion": EXTERNAL_SECRETS_API, "kind": "ExternalSecret",
            "metadata": meta(b.app, target, "secrets"),
            "spec": {"refreshInterval": "1h",
                     "secretStoreRef": {"kind": "ClusterSecretStore", "name": store},
                     "target": {"name": target, "creationPolicy": "Owner"},
                     "data": [{"secretKey": key, "remoteRef": {
                         "key": remote_key, "property": f"{target}/{key}"}} for key in keys]}})
    return out
