"""The one place Headway talks to a Kubernetes API server (runtime = "kubernetes"). The
official client (`kubernetes`) loads the kubeconfig (KUBECONFIG as kubectl reads it, else
~/.kube/config), authenticates and speaks TLS; the paths are built here, so every call is one
of API_CALLS. Library errors become headway.errors naming the object, the context and the verb.
Never logs, prints or puts a request body into an error (a Secret's body holds values).

API_CALLS (NS: [kubernetes] namespace, default APP-ENV; KIND: see KINDS):
    GET    /api/v1/namespaces/NS                                   the namespace exists
    PATCH  PREFIX/namespaces/NS/KINDS/NAME?fieldManager=headway&force=true[&dryRun=All]
           Content-Type: application/apply-patch+yaml              server-side apply
    PATCH  /apis/apps/v1/namespaces/NS/deployments/NAME?fieldManager=headway
           Content-Type: application/merge-patch+json              replicas, release annotations,
                                                                   a canary's promote/abort
    GET    PREFIX/namespaces/NS/KINDS/NAME                         read one object (its status)
    GET    PREFIX/namespaces/NS/KINDS?labelSelector=...            list an app's objects
    DELETE PREFIX/namespaces/NS/KINDS/NAME?propagationPolicy=Background   retention
    POST   /apis/coordination.k8s.io/v1/namespaces/NS/leases       the deploy lock (APP-ENV-deploy)
    GET, DELETE /apis/coordination.k8s.io/v1/namespaces/NS/leases/APP-ENV-deploy   its release
    GET    /api/v1/namespaces/NS/pods/NAME/log?container=C&tailLines=N    logs (headway run:
                                                                   polled while its Job runs)
PREFIX is /api/v1 (ServiceAccount, ConfigMap, Secret, Service, PersistentVolumeClaim, Pod),
/apis/apps/v1 (Deployment), /apis/batch/v1 (Job), /apis/policy/v1 (PodDisruptionBudget),
/apis/networking.k8s.io/v1 (NetworkPolicy, Ingress), /apis/autoscaling/v2
(HorizontalPodAutoscaler), /apis/coordination.k8s.io/v1 (Lease). No discovery, watch, exec, or
cluster-scoped write. A canary (deploy.strategy = "canary") also reads Prometheus, not the
cluster: GET PROMETHEUS_URL/api/v1/query?query=... (headway.kube.prometheus), three instant
queries per release at each verdict, once a second."""

from __future__ import annotations

import json
import os
import sys
import urllib.parse
from dataclasses import dataclass
from typing import Any

from headway.errors import ConfigError, HeadwayError, NotFound, RuntimeFailure

Obj = dict[str, Any]
FIELD_MANAGER = "headway"
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
TIMEOUT = (5.0, 30.0)  # connect, read: seconds
KINDS: dict[str, tuple[str, str]] = {
    "ServiceAccount": ("/api/v1", "serviceaccounts"),
    "ConfigMap": ("/api/v1", "configmaps"),
    "Secret": ("/api/v1", "secrets"),
    "Service": ("/api/v1", "services"),
    "PersistentVolumeClaim": ("/api/v1", "persistentvolumeclaims"),
    "Pod": ("/api/v1", "pods"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "Job": ("/apis/batch/v1", "jobs"),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    "Ingress": ("/apis/networking.k8s.io/v1", "ingresses"),
    "HorizontalPodAutoscaler": ("/apis/autoscaling/v2", "horizontalpodautoscalers"),
    "Lease": ("/apis/coordination.k8s.io/v1", "leases"),
}


def kubeconfig_paths() -> list[str]:
    """The files kubectl reads: KUBECONFIG's list (':'-separated), else ~/.kube/config."""
    value = os.environ.get("KUBECONFIG") or "~/.kube/config"
    return [os.path.expanduser(p) for p in value.split(os.pathsep) if p]


def read_contexts(paths: list[str], where: str) -> tuple[list[str], str | None]:
    """Every context name, and current-context (the first file that sets it, as kubectl)."""
    import yaml

    names: list[str] = []
    current: str | None = None
    for path in paths:
        try:
            with open(path, encoding="utf-8") as handle:
                data = yaml.safe_load(handle) or {}
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path} ({where}): not a kubeconfig Headway can read: "
                              f"{type(exc).__name__}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path} ({where}): not a kubeconfig (a YAML mapping)")
        names += [str(c.get("name")) for c in data.get("contexts") or [] if isinstance(c, dict)]
        current = current or data.get("current-context") or None
    return names, current


def choose_context(wanted: str | None) -> str:
    """[kubernetes] context, or the kubeconfig's current-context; ConfigError when neither."""
    paths = kubeconfig_paths()
    where = "KUBECONFIG=" + os.environ["KUBECONFIG"] if os.environ.get("KUBECONFIG") \
        else "~/.kube/config"
    if not any(os.path.isfile(p) for p in paths):
        raise ConfigError(f"no kubeconfig: {where} does not exist (runtime = \"kubernetes\" "
                          "deploys to a cluster named in a kubeconfig)",
                          hint="get one from your cluster's provider, or point KUBECONFIG at it")
    names, current = read_contexts(paths, where)
    if wanted is not None and wanted not in names:
        raise ConfigError(f"kubernetes.context: {wanted!r} is not a context of {where} "
                          f"(it has: {', '.join(names) or 'none'})",
                          hint="kubectl config get-contexts lists them")
    chosen = wanted or current
    if not chosen:
        raise ConfigError(f"no kube context: [kubernetes] context is not set and {where} has "
                          "no current-context", hint="set [kubernetes] context = \"NAME\" "
                          "(kubectl config get-contexts), or kubectl config use-context NAME")
    if chosen not in names:
        raise ConfigError(f"{where}: current-context {chosen!r} is not one of its contexts "
                          f"({', '.join(names) or 'none'})", hint="kubectl config use-context NAME")
    return str(chosen)


def _client() -> tuple[Any, type[Exception]]:
    """The client's kubeconfig loader. `import kubernetes` imports kubernetes.dynamic, which
    imports kubernetes_validate when it is installed (a dev dependency here), and that costs
    seconds of jsonschema format tables: hidden for this import only, Headway never uses it."""
    hide = "kubernetes_validate" not in sys.modules
    if hide:
        sys.modules["kubernetes_validate"] = None  # type: ignore[assignment]
    try:
        from kubernetes.config import new_client_from_config
        from kubernetes.config.config_exception import ConfigException
    finally:
        if hide:
            del sys.modules["kubernetes_validate"]
    return new_client_from_config, ConfigException


@dataclass
class Cluster:
    """One namespace of one cluster, as the kubeconfig's `context` reaches it."""

    api: Any  # kubernetes.client.ApiClient
    context: str
    namespace: str

    @classmethod
    def connect(cls, context: str | None, namespace: str) -> Cluster:
        chosen = choose_context(context)
        new_client_from_config, ConfigException = _client()
        try:
            api = new_client_from_config(os.pathsep.join(kubeconfig_paths()), context=chosen,
                                         persist_config=False)
        except (ConfigException, OSError, ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"kube context {chosen}: the kubeconfig entry cannot be used "
                              f"({exc})", hint="kubectl --context "
                              f"{chosen} get namespace {namespace} shows what is wrong") from None
        api.configuration.retries = 1  # an unreachable server fails in seconds, not minutes
        return cls(api, chosen, namespace)

    @property
    def server(self) -> str:
        return str(self.api.configuration.host)

    # paths --------------------------------------------------------------------------------
    def path(self, kind: str, name: str | None = None, sub: str | None = None) -> str:
        prefix, plural = KINDS[kind]
        out = f"{prefix}/namespaces/{self.namespace}/{plural}"
        return out + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")

    # calls --------------------------------------------------------------------------------
    def namespace_exists(self) -> bool:
        found = self._call("GET", f"/api/v1/namespaces/{self.namespace}",
                           what=f"namespace {self.namespace}", missing_ok=True)
        return found is not None

    def apply(self, obj: Obj, *, dry_run: bool = False) -> Obj:
        """Server-side apply of the whole object (Headway owns every field it sets)."""
        query = {"fieldManager": FIELD_MANAGER, "force": "true"}
        if dry_run:
            query["dryRun"] = "All"
        kind, name = obj["kind"], obj["metadata"]["name"]
        body = {**obj, "metadata": {**obj["metadata"], "namespace": self.namespace}}
        return self._json("PATCH", self.path(kind, name), query=query, body=body,
                          content_type=APPLY, what=f"{kind} {name}") or {}

    def create(self, obj: Obj) -> bool:
        """POST a new object; False when one of that name exists (409 AlreadyExists)."""
        kind, name = obj["kind"], obj["metadata"]["name"]
        made = self._call("POST", self.path(kind), body=obj, content_type="application/json",
                          what=f"{kind} {name}", exists_ok=True)
        return made is not None

    def patch(self, kind: str, name: str, changes: Obj) -> Obj:
        """A JSON merge patch (replicas, annotations): fields apply must not take over."""
        return self._json("PATCH", self.path(kind, name), query={"fieldManager": FIELD_MANAGER},
                          body=changes, content_type=MERGE, what=f"{kind} {name}") or {}

    def get(self, kind: str, name: str) -> Obj | None:
        return self._json("GET", self.path(kind, name), what=f"{kind} {name}", missing_ok=True)

    def list(self, kind: str, labels: dict[str, str]) -> list[Obj]:
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        found = self._json("GET", self.path(kind), query={"labelSelector": selector},
                           what=f"{KINDS[kind][1]} ({selector})")
        return list((found or {}).get("items") or [])

    def delete(self, kind: str, name: str) -> None:
        self._call("DELETE", self.path(kind, name), query={"propagationPolicy": "Background"},
                   what=f"{kind} {name}", missing_ok=True)

    def log(self, pod: str, *, container: str | None = None, tail: int | None = None) -> str:
        query: dict[str, str] = {}
        if container:
            query["container"] = container
        if tail is not None:
            query["tailLines"] = str(tail)
        data = self._call("GET", self.path("Pod", pod, "log"), query=query, what=f"pod {pod} log",
                          missing_ok=True)
        return (data or b"").decode("utf-8", "replace")

    def _json(self, verb: str, path: str, **kwargs: Any) -> Obj | None:
        data = self._call(verb, path, **kwargs)
        if data is None:
            return None
        try:
            return dict(json.loads(data or b"{}"))
        except ValueError:
            raise RuntimeFailure(f"{verb} {path} on {self.server}: the answer is not JSON",
                                 hint="is that a Kubernetes API server?") from None

    def _call(self, verb: str, path: str, *, what: str, query: dict[str, str] | None = None,
              body: Obj | None = None, content_type: str | None = None,
              missing_ok: bool = False, exists_ok: bool = False) -> bytes | None:
        import urllib3
        from kubernetes.client.exceptions import OpenApiException

        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        url = path + ("?" + urllib.parse.urlencode(query) if query else "")
        try:
            request = self.api.param_serialize(verb, url, header_params=headers, body=body,
                                               auth_settings=["BearerToken"])
            response = self.api.call_api(*request, _request_timeout=TIMEOUT)
            data = response.read()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise RuntimeFailure(
                f"the Kubernetes API server of context {self.context} ({self.server}) cannot "
                f"be reached: {type(exc).__name__}", hint=f"kubectl --context {self.context} "
                "cluster-info checks the same address and credentials") from None
        except OpenApiException as exc:  # the client's own (status 0: TLS, a bad config)
            raise RuntimeFailure(f"{verb} {what} on context {self.context}: "
                                 f"{getattr(exc, 'reason', None) or type(exc).__name__}") from None
        if (response.status == 404 and missing_ok) or (response.status == 409 and exists_ok):
            return None
        if response.status >= 400:
            raise self.error(verb, what, response.status, data)
        return bytes(data or b"")

    def error(self, verb: str, what: str, status: int, data: bytes | None) -> HeadwayError:
        """The API's Status object, as a Headway error that names what was refused."""
        try:
            status_obj = json.loads(data or b"{}")
        except ValueError:
            status_obj = {}
        message = str(status_obj.get("message") or "").strip() or f"HTTP {status}"
        where = f"namespace {self.namespace}, context {self.context}"
        if status == 401:
            return ConfigError(f"the API server of context {self.context} refused its "
                               f"credentials (401) to {verb} {what}",
                               hint=f"renew the kubeconfig user of context {self.context} "
                               "(kubectl config view --minify shows it)")
        if status == 403:
            return ConfigError(f"context {self.context} may not {verb} {what} ({where}): "
                               f"{message}", hint=f"ask for a Role that allows it: kubectl "
                               f"--context {self.context} auth can-i --list -n {self.namespace}")
        if status == 422:
            causes = (status_obj.get("details") or {}).get("causes") or []
            fields = "; ".join(f"{c.get('field', '?')}: {c.get('message', '')}" for c in causes)
            if what.startswith("Secret "):  # the API's message may quote the value
                fields = "; ".join(str(c.get("field", "?")) for c in causes) or "(not shown)"
                message = "(not shown: it may quote a secret value)"
            return ConfigError(f"the API server rejected {what} ({where}): {fields or message}",
                               hint="this field comes from headway.toml (see the key of the same "
                               "name); nothing was applied")
        if status == 409:
            return RuntimeFailure(f"{verb} {what} ({where}) conflicts with another change: "
                                  f"{message}", hint="run the deploy again; if another tool "
                                  "manages this object, remove it from that tool first")
        if status == 404:
            return NotFound(f"{what} ({where}): not found: {message}")
        return RuntimeFailure(f"{verb} {what} ({where}): {status} {message}")
