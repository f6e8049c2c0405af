"""A FAKE Kubernetes API server for the tests of runtime = "kubernetes": no real API server
can run on these machines. It is a real HTTP server on 127.0.0.1 (threaded http.server) that
answers like kube-apiserver for exactly the calls headway.kube.cluster makes (its
API_CALLS), and nothing else:

- GET a namespace (404 Status when it is not in `namespaces`);
- server-side apply (PATCH, application/apply-patch+yaml, fieldManager, force, dryRun=All):
  stores the object, bumps resourceVersion and (when the spec changed) generation; 409 for an
  object in `conflicts`, 422 with details.causes for one in `invalid`;
- JSON merge patch (application/merge-patch+json) of a stored object; POST (create: 409
  AlreadyExists when the name is taken; the deploy lock's Lease); GET, LIST with an equality
  labelSelector, DELETE;
- a Deployment's status becomes Available `delay` seconds after its last change, unless its
  name is in `never_available`; a Job completes after `delay`, or fails when in `failing_jobs`
  (a one-off Job of `headway run`, component "run": exits `run_exit`, its pod terminated);
- pods made up from the Deployments and Jobs (their template's labels), and their logs;
- 401 without the bearer token, 403 for a (verb, resource) in `forbidden`.

No discovery endpoints: Headway builds its paths itself (headway.kube.cluster.KINDS) and
never asks a server which APIs it serves, so none are faked. It does not validate objects
against schemas (the tests do that with kubernetes-validate), run
controllers, schedule, watch, or do field-ownership merging: an apply replaces what it sets.
Every request is recorded in `received` (verb, path, query, content type, body)."""

from __future__ import annotations

import copy
import json
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]
TOKEN = "fake-token"
NAMESPACE_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)$")
OBJECT_PATH = re.compile(r"^(/api/v1|/apis/[^/]+/[^/]+)/namespaces/([^/]+)/([^/]+)"
                         r"(?:/([^/]+))?(?:/(log))?$")


@dataclass
class Received:
    verb: str
    path: str
    query: dict[str, str]
    content_type: str
    body: Obj | None


@dataclass
class FakeKubeAPI:
    namespaces: set[str] = field(default_factory=lambda: {"default"})
    delay: float = 0.3
    never_available: set[str] = field(default_factory=set)
    failing_jobs: set[str] = field(default_factory=set)
    run_exit: int = 0  # the exit code of a one-off Job's command (`headway run`)
    invalid: dict[str, tuple[str, str]] = field(default_factory=dict)  # "Kind/name" -> cause
    conflicts: set[str] = field(default_factory=set)  # "Kind/name"
    forbidden: set[tuple[str, str]] = field(default_factory=set)  # (verb, plural)
    objects: dict[tuple[str, str, str], Obj] = field(default_factory=dict)  # ns, plural, name
    changed: dict[tuple[str, str, str], float] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    version: int = 100
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    # lifecycle ------------------------------------------------------------------------------
    def start(self) -> FakeKubeAPI:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                api.handle(self)

            do_GET = do_PATCH = do_DELETE = do_POST = do_PUT = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def kubeconfig(self, path: Path, *, context: str = "fake", token: str = TOKEN,
                   current: bool = True) -> Path:
        config: Obj = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake-user", "user": {"token": token}}],
            "contexts": [{"name": context, "context": {"cluster": "fake", "user": "fake-user"}}]}
        if current:
            config["current-context"] = context
        path.write_text(yaml.safe_dump(config))
        return path

    # what the tests read ----------------------------------------------------------------------
    def get(self, namespace: str, plural: str, name: str) -> Obj | None:
        found = self.objects.get((namespace, plural, name))
        return self._with_status(plural, found) if found else None

    def names(self, namespace: str, plural: str) -> list[str]:
        return sorted(n for ns, p, n in self.objects if ns == namespace and p == plural)

    def applied(self) -> list[Obj]:
        """Every body of a real (not dry-run) server-side apply, in order."""
        return [r.body for r in self.received if r.body is not None and r.verb == "PATCH"
                and "apply-patch" in r.content_type and "dryRun" not in r.query]

    # HTTP -------------------------------------------------------------------------------------
    def handle(self, h: BaseHTTPRequestHandler) -> None:
        parsed = urllib.parse.urlsplit(h.path)
        query = dict(urllib.parse.parse_qsl(parsed.query))
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        content_type = h.headers.get("Content-Type", "")
        body = yaml.safe_load(raw) if raw else None
        with self.lock:
            self.received.append(Received(h.command, parsed.path, query, content_type, body))
            if h.headers.get("Authorization") != f"Bearer {TOKEN}":
                code, answer = 401, status(401, "Unauthorized", "Unauthorized")
            else:
                code, answer = self.route(h.command, parsed.path, query, content_type, body)
        data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        h.send_response(code)
        h.send_header("Content-Type", "text/plain" if isinstance(answer, bytes)
                      else "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def route(self, verb: str, path: str, query: dict[str, str], content_type: str,
              body: Obj | None) -> tuple[int, Any]:
        if match := NAMESPACE_PATH.match(path):
            name = match.group(1)
            if verb == "GET" and name in self.namespaces:
                return 200, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            return 404, status(404, f'namespaces "{name}" not found', "NotFound")
        match = OBJECT_PATH.match(path)
        if not match:
            return 404, status(404, "the server could not find the requested resource", "NotFound")
        prefix, namespace, plural, name, log = match.groups()
        if (verb, plural) in self.forbidden:
            return 403, status(403, f'{plural} is forbidden: User "fake-user" cannot '
                               f'{verb.lower()} resource "{plural}" in namespace "{namespace}"',
                               "Forbidden")
        if namespace not in self.namespaces:
            return 404, status(404, f'namespaces "{namespace}" not found', "NotFound")
        if plural == "pods":
            return self.pods(namespace, name, log, query)
        key = (namespace, plural, name or "")
        if verb == "GET" and name:
            found = self.get(namespace, plural, name)
            return (200, found) if found else (404, status(404, f'{plural} "{name}" not found',
                                                           "NotFound"))
        if verb == "GET":
            items = [self._with_status(p, o) for (ns, p, _), o in sorted(self.objects.items())
                     if ns == namespace and p == plural and selects(query, o)]
            return 200, {"kind": "List", "apiVersion": prefix.rsplit("/", 1)[-1],
                         "metadata": {"resourceVersion": str(self.version)}, "items": items}
        if verb == "DELETE" and name:
            if self.objects.pop(key, None) is None:
                return 404, status(404, f'{plural} "{name}" not found', "NotFound")
            return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}
        if verb == "POST" and not name and body is not None:
            made = (namespace, plural, str(body.get("metadata", {}).get("name", "")))
            if made in self.objects:
                return 409, status(409, f'{plural} "{made[2]}" already exists', "AlreadyExists")
            return self.apply(made, body, dry_run=False, manager="create")
        if verb == "PATCH" and name and body is not None:
            if "apply-patch" in content_type:
                return self.apply(key, body, dry_run=query.get("dryRun") == "All",
                                  manager=query.get("fieldManager", ""))
            if "merge-patch" in content_type:
                return self.merge(key, body)
        return 405, status(405, f"{verb} {path} is not faked", "MethodNotAllowed")

    def apply(self, key: tuple[str, str, str], body: Obj, *, dry_run: bool,
              manager: str) -> tuple[int, Obj]:
        kind, name = body.get("kind"), key[2]
        if body.get("metadata", {}).get("name") != name or not manager:
            return 400, status(400, "name mismatch or no fieldManager", "BadRequest")
        if f"{kind}/{name}" in self.invalid:
            where, message = self.invalid[f"{kind}/{name}"]
            answer = status(422, f'{kind} "{name}" is invalid: {where}: {message}', "Invalid")
            answer["details"] = {"name": name, "kind": kind,
                                 "causes": [{"reason": "FieldValueInvalid", "message": message,
                                             "field": where}]}
            return 422, answer
        if f"{kind}/{name}" in self.conflicts:
            return 409, status(409, 'Apply failed with 1 conflict: conflict with "kubectl": '
                               ".spec.replicas", "Conflict")
        old = self.objects.get(key)
        new = copy.deepcopy(body)
        meta = new.setdefault("metadata", {})
        meta["namespace"] = key[0]
        generation = (old or {}).get("metadata", {}).get("generation", 0)
        if old is None or old.get("spec") != new.get("spec"):
            generation += 1
        self.version += 1
        meta |= {"generation": generation, "resourceVersion": str(self.version),
                 "uid": (old or {}).get("metadata", {}).get("uid") or f"uid-{self.version}"}
        if dry_run:
            return 200, new
        self.objects[key] = new
        if old is None or old.get("spec") != new.get("spec"):
            self.changed[key] = time.monotonic()
        return (201 if old is None else 200), new

    def merge(self, key: tuple[str, str, str], patch: Obj) -> tuple[int, Obj]:
        old = self.objects.get(key)
        if old is None:
            return 404, status(404, f'{key[1]} "{key[2]}" not found', "NotFound")
        new = merge_patch(copy.deepcopy(old), patch)
        self.version += 1
        if new.get("spec") != old.get("spec"):
            new["metadata"]["generation"] = old["metadata"].get("generation", 0) + 1
            self.changed[key] = time.monotonic()
        new["metadata"]["resourceVersion"] = str(self.version)
        self.objects[key] = new
        return 200, new

    # made-up state ----------------------------------------------------------------------------
    def _with_status(self, plural: str, obj: Obj) -> Obj:
        obj = copy.deepcopy(obj)
        key = (obj["metadata"]["namespace"], plural, obj["metadata"]["name"])
        settled = time.monotonic() - self.changed.get(key, 0) >= self.delay
        name, gen = obj["metadata"]["name"], obj["metadata"].get("generation", 1)
        if plural == "deployments":
            wanted = obj["spec"].get("replicas", 1)
            ok = settled and name not in self.never_available
            obj["status"] = {
                "observedGeneration": gen if settled else gen - 1, "replicas": wanted,
                "updatedReplicas": wanted if settled else 0,
                "availableReplicas": wanted if ok else 0,
                "conditions": [{"type": "Available", "status": "True" if ok else "False",
                                "reason": "MinimumReplicasAvailable" if ok else
                                "MinimumReplicasUnavailable",
                                "message": "Deployment has minimum availability." if ok else
                                "Deployment does not have minimum availability."}]}
        if plural == "jobs" and settled:
            failed = name in self.failing_jobs or self.exit_code(obj) != 0
            obj["status"] = {"failed": 1} if failed else {"succeeded": 1}
            obj["status"]["conditions"] = [{
                "type": "Failed" if failed else "Complete", "status": "True",
                "reason": "BackoffLimitExceeded" if failed else "Completed",
                "message": "Job has reached the specified backoff limit" if failed else ""}]
        return obj

    def made_up_pods(self, namespace: str) -> list[Obj]:
        pods = []
        for (ns, plural, name), obj in sorted(self.objects.items()):
            if ns != namespace or plural not in {"deployments", "jobs"}:
                continue
            labels = dict(obj["spec"]["template"]["metadata"].get("labels") or {})
            count = obj["spec"].get("replicas", 1) if plural == "deployments" else 1
            if plural == "jobs":
                labels["job-name"] = name
            ready = plural == "deployments" and name not in self.never_available
            phase, state = ("Running" if ready or plural == "jobs" else "Pending"), {}
            settled = time.monotonic() - self.changed.get((ns, plural, name), 0) >= self.delay
            if plural == "jobs" and settled:
                code = self.exit_code(obj)
                phase, state = ("Succeeded" if code == 0 else "Failed",
                                {"terminated": {"exitCode": code}})
            for index in range(count):
                pods.append({"apiVersion": "v1", "kind": "Pod", "metadata": {
                    "name": f"{name}-fake{index}", "namespace": ns, "labels": labels},
                    "spec": copy.deepcopy(obj["spec"]["template"]["spec"]),
                    "status": {"phase": phase,
                               "containerStatuses": [{"name": "c", "restartCount": 0,
                                                      "ready": ready, "state": state}]}})
        return pods

    def exit_code(self, job: Obj) -> int:
        """A release Job in failing_jobs exits 1; a one-off (`headway run`) exits run_exit."""
        if job["metadata"]["name"] in self.failing_jobs:
            return 1
        labels = job["spec"]["template"]["metadata"].get("labels") or {}
        return self.run_exit if labels.get("app.kubernetes.io/component") == "run" else 0

    def pods(self, namespace: str, name: str | None, log: str | None,
             query: dict[str, str]) -> tuple[int, Any]:
        pods = self.made_up_pods(namespace)
        if name is None:
            return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {},
                         "items": [p for p in pods if selects(query, p)]}
        pod = next((p for p in pods if p["metadata"]["name"] == name), None)
        if pod is None:
            return 404, status(404, f'pods "{name}" not found', "NotFound")
        if not log:
            return 200, pod
        job = pod["metadata"]["labels"].get("job-name")
        lines = ([f"migrating {job}", "error: relation already exists"]
                 if job in self.failing_jobs else [f"{name} listening", f"{name} GET /up 200"])
        if pod["metadata"]["labels"].get("app.kubernetes.io/component") == "run":
            container = pod["spec"]["containers"][0]  # a one-off: what it ran, and where from
            lines = [f"ran {json.dumps(container.get('args'))} in {container.get('image')}",
                     f"exit {self.exit_code(self.objects[(namespace, 'jobs', job)])}"]
        tail = int(query.get("tailLines", len(lines)))
        return 200, ("\n".join(lines[-tail:]) + "\n").encode()


def status(code: int, message: str, reason: str) -> Obj:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def selects(query: dict[str, str], obj: Obj) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in filter(None, query.get("labelSelector", "").split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = merge_patch(target.get(key), value)
    return target
