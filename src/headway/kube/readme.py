"""The README.md written beside the kustomize folders: the order to apply them in (the release
Job before the Deployments), and the Secrets to create, by name and key only. Pure."""

from __future__ import annotations

from headway.kube import manifests
from headway.kube.kustomize import Environment, release_name
from headway.kube.objects import Build, Image
from headway.kube.values import Values
from headway.spec.models import Spec


def kustomize(spec: Spec, envs: list[Environment], files: dict[str, str],
              secret_names: list[str]) -> str:
    app = spec.app.name
    lines = [f"# {app} on Kubernetes", "",
             ("Generated from headway.toml by `headway generate kubernetes`; generate again "
             "rather than edit."), "",
             ("- `base/`: every long-running object; `base/needs/`: what the release command "
             "needs first (ServiceAccount, accessories, volumes)."),
             "- `overlays/ENV/`: namespace, image, the environment's variables.",
             "- `overlays/ENV/release/`: the release command's Job (and what it needs).", "",
             ("Needs kustomize v4 or later (kubectl 1.21+). Checked offline against the "
             "Kubernetes 1.29 to 1.37 OpenAPI schemas; apply them to a test cluster first."), ""]
    for env in envs:
        ns, where = env.namespace, f"overlays/{env.name}"
        lines += [f"## {env.name}", "", "```sh", f"kubectl create namespace {ns}"]
        if f"{where}/release/kustomization.yaml" in files:
            job = release_name(app, env.image)
            lines += [f"kubectl apply -k {where}/release",
                      (f"kubectl -n {ns} wait --for=condition=complete --timeout="
                      f"{int(spec.release.timeout)}s job/{job}   # the release command: "
                      "it must complete before the new pods take traffic")]
        lines += [f"kubectl apply -k {where}", "```", ""]
    keys = manifests.secret_keys(Build(spec, Values(template=False), Image(app),
                                       secret_names))
    if keys:
        lines += ["## Secrets", "",
                  "No secret value is in these files. The pods read these Secrets (name: keys); "
                  + ("the ExternalSecrets in each overlay make them from the ClusterSecretStore "
                     f"`{spec.kubernetes.external_secrets}`." if spec.kubernetes.external_secrets
                     else "create them in each namespace, e.g. `kubectl create secret generic "
                     "NAME --from-file=KEY=PATH`."), ""]
        lines += [f"- `{name}`: {', '.join(k)}" for name, k in keys.items()]
        lines.append("")
    if spec.registry.username:
        lines += [(f"The pods pull the image with the Secret `{app}-registry`: `kubectl create "
                  f"secret generic {app}-registry --type=kubernetes.io/dockerconfigjson "
                  "--from-file=.dockerconfigjson=PATH` (a Docker config.json logged in to "
                  f"{spec.registry.server}), or your "
                  "cluster's own pull credentials."), ""]
    return "\n".join(lines)

