"""`headway deploy` and `headway rollback` with runtime = "kubernetes": blue-green across
Deployments (canary: headway.kube.canary, from the same first steps). A deploy checks every object with a server-side dry run before the first real
apply, applies the shared objects and the release's ConfigMap/Secret, runs the release Job and
waits for it, starts the release's Deployments and waits until they are Available, and only
then switches the web Service's selector to the release. Anything failing before the switch
leaves the Service on the previous release (the new Deployments scaled to 0, marked failed).
Never prints (progress goes to a callback) and never puts a secret value in a message.
The calls it makes are cluster.API_CALLS."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from headway.errors import ConfigError, DeployFailed, HeadwayError, LockedError, NotFound
from headway.kube import release as rel
from headway.kube.cluster import Cluster, Obj
from headway.kube.objects import Image
from headway.spec.models import Spec

MICRO = "%Y-%m-%dT%H:%M:%S.%fZ"  # a Lease's MicroTime
POLL = 0.25  # seconds between two reads of a Deployment's or Job's status
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Outcome:
    release: int
    previous: int | None
    message: str
    changed: bool = True


def now_text(clock: Callable[[], float] = time.time) -> str:
    return datetime.fromtimestamp(clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None, form: str = "%Y-%m-%dT%H:%M:%SZ") -> float | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, form).replace(
            tzinfo=UTC).timestamp()
    except ValueError:
        return None


class Rollout:
    """One app and environment in one namespace; `sleep` and `clock` are the tests' to speed."""

    def __init__(self, cluster: Cluster, spec: Spec, env: str, *, progress: Progress,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time) -> None:
        self.cluster, self.spec, self.env = cluster, spec, env
        self.app = spec.app.name
        self.progress, self.sleep, self.clock = progress, sleep, clock

    # reading ------------------------------------------------------------------------------
    def check_namespace(self) -> None:
        ns = self.cluster.namespace
        if not self.cluster.namespace_exists():
            raise ConfigError(
                f"namespace {ns} does not exist in context {self.cluster.context} "
                f"([kubernetes] namespace, default APP-ENV: {self.app}-{self.env})",
                hint=f"create it (Headway does not): kubectl --context {self.cluster.context} "
                f"create namespace {ns}, and give the deploying user a Role in it")

    def deployments(self) -> list[Obj]:
        found = self.cluster.list("Deployment", rel.selected_labels(self.app, self.env))
        return [d for d in found if rel.release_of(d) is not None]

    def live(self) -> int | None:
        svc = self.cluster.get("Service", f"{self.app}-web")
        value = ((svc or {}).get("spec", {}).get("selector") or {}).get(rel.RELEASE, "")
        return int(value) if str(value).isdigit() else None

    def next_number(self, deployments: list[Obj]) -> int:
        jobs = self.cluster.list("Job", rel.selected_labels(self.app, self.env))
        numbers = [n for n in map(rel.release_of, [*deployments, *jobs]) if n is not None]
        return max(numbers, default=0) + 1

    def check_environment(self) -> None:
        """Two environments in one namespace would share the objects' names."""
        others = [d for d in self.cluster.list("Deployment", {"app.kubernetes.io/name": self.app})
                  if (d["metadata"].get("labels") or {}).get(rel.ENVIRONMENT) not in
                  (None, self.env)]
        if others:
            env = others[0]["metadata"]["labels"][rel.ENVIRONMENT]
            raise ConfigError(f"namespace {self.cluster.namespace} holds {self.app}'s {env} "
                              f"environment: --env {self.env} needs its own namespace",
                              hint="leave [kubernetes] namespace unset: each environment "
                              f"then has its own ({self.app}-ENV)")

    # deploy -------------------------------------------------------------------------------
    @contextmanager
    def locked(self, command: str) -> Iterator[None]:
        """One deploy or rollback of an app and environment at a time, from any machine: a
        Lease in the namespace, created (POST fails when it exists) and deleted after. One
        whose holder died expires after the longest a deploy may take."""
        name = f"{self.app}-{self.env}-deploy"
        stamp = datetime.fromtimestamp(self.clock(), UTC).strftime(MICRO)
        duration = int(self.spec.deploy.timeout + self.spec.release.timeout + 120)
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {
            "name": name, "labels": rel.selected_labels(self.app, self.env)},
            "spec": {"holderIdentity": f"headway {command} on {socket.gethostname()} pid "
                     f"{os.getpid()}", "leaseDurationSeconds": duration,
                     "acquireTime": stamp, "renewTime": stamp}}
        if not self.cluster.create(lease):
            held = (self.cluster.get("Lease", name) or {}).get("spec") or {}
            renewed = parse_time(str(held.get("renewTime") or ""), MICRO)
            until = (renewed or 0) + float(held.get("leaseDurationSeconds") or 0)
            if self.clock() < until or not self._take_over(name, lease):
                raise LockedError(
                    f"{held.get('holderIdentity', 'another headway')} holds {self.app} "
                    f"({self.env}) in namespace {self.cluster.namespace} (Lease {name}, until "
                    f"{now_text(lambda: until)})", hint="wait for it to finish; if it died: "
                    f"kubectl -n {self.cluster.namespace} delete lease {name}")
        try:
            yield
        finally:  # a lease left behind (the server went away) expires: the error that matters
            with contextlib.suppress(HeadwayError):  # is the deploy's own
                self.cluster.delete("Lease", name)

    def _take_over(self, name: str, lease: Obj) -> bool:
        """An expired lease: its holder died. Deleted, then created as ours."""
        self.cluster.delete("Lease", name)
        return self.cluster.create(lease)

    def deploy(self, image: Image, secrets: dict[str, str], *, fingerprint: str,
               force: bool = False, dry_run: bool = False) -> Outcome:
        self.check_namespace()
        self.check_environment()
        if dry_run:
            return self._deploy(image, secrets, fingerprint=fingerprint, force=force,
                                dry_run=True)
        with self.locked("deploy"):
            return self._deploy(image, secrets, fingerprint=fingerprint, force=force,
                                dry_run=False)

    def _deploy(self, image: Image, secrets: dict[str, str], *, fingerprint: str,
                force: bool, dry_run: bool) -> Outcome:
        deployments = self.deployments()
        live = self.live()
        same = [d for d in deployments if rel.release_of(d) == live
                and rel.notes_of(d).get(rel.FINGERPRINT) == fingerprint]
        if same and not force and not dry_run:
            return Outcome(live or 0, live, f"release {live} is live with this code and config: "
                           "nothing changed (--force deploys anyway)", changed=False)
        number = self.next_number(deployments)
        objects = rel.build(self.spec, self.env, number, image, secrets=secrets,
                            created=now_text(self.clock), fingerprint=fingerprint)
        leaked = rel.leaks(objects.all(), secrets)
        if leaked:  # a variable or command holds a secret's value: never sent outside a Secret
            raise ConfigError("a secret's value appears outside a Secret: " + "; ".join(leaked),
                              hint="reference secrets by name ([app] secrets), never paste them "
                              "into [env] or a command")
        self.progress(f"checking {len(objects.all())} objects (server-side dry run) in "
                      f"{self.cluster.namespace} on {self.cluster.context}")
        for obj in objects.all():
            self.cluster.apply(obj, dry_run=True)
        if dry_run:
            return Outcome(number, live, f"release {number} would apply: " + ", ".join(
                f"{o['kind']} {o['metadata']['name']}" for o in objects.all()), changed=False)
        for obj in [*objects.shared, *objects.config]:
            self.cluster.apply(obj)
        if objects.job is not None:
            self.run_job(objects.job, number)
        if self.spec.deploy.strategy == "canary" and live is not None:  # a first deploy has
            from headway.kube.canary import Canary  # nothing to compare: blue-green

            return Canary(self, objects, number, live).run()
        for obj in objects.deployments:
            self.cluster.apply(obj)
        self.wait_available(objects.deployments, number)
        self.go_live(objects.switch, number, live)
        self.tidy(number)
        return Outcome(number, live, f"release {number} is live ({image.reference})"
                       + (f"; release {live} kept for rollback" if live else ""))

    def run_job(self, job: Obj, number: int) -> None:
        name = job["metadata"]["name"]
        self.progress(f"running the release command (Job {name})")
        self.cluster.apply(job)
        deadline = self.clock() + self.spec.release.timeout + 30
        while True:
            state = self.cluster.get("Job", name) or {}
            conditions = {c.get("type"): c for c in state.get("status", {}).get("conditions") or []
                          if c.get("status") == "True"}
            if "Complete" in conditions:
                return
            failed = conditions.get("Failed")
            if failed or self.clock() > deadline:
                why = (failed or {}).get("message") or (failed or {}).get("reason") \
                    or "it did not complete in time"
                tail = self.pod_logs({"job-name": name})
                # the Job stays for its logs (its TTL removes it); no Deployment reads these
                self.cluster.delete("Secret", rel.secret_name_of(self.app, number))
                self.cluster.delete("ConfigMap", rel.config_name_of(self.app, number))
                raise DeployFailed(f"release {number} refused: the release command failed "
                                   f"(Job {name}: {why}); nothing was switched",
                                   hint=f"kubectl -n {self.cluster.namespace} logs job/{name}",
                                   log_tail=tail)
            self.sleep(POLL)

    def wait_available(self, deployments: list[Obj], number: int) -> None:
        self.progress(f"waiting for release {number}'s Deployments to be Available "
                      f"(at most {self.spec.deploy.timeout:.0f}s)")
        deadline = self.clock() + self.spec.deploy.timeout
        waiting = [d["metadata"]["name"] for d in deployments]
        while waiting:
            waiting = [name for name in waiting if not available(self.cluster.get("Deployment",
                                                                                    name))]
            if waiting and self.clock() > deadline:
                self.fail(deployments, number, waiting)
            if waiting:
                self.sleep(POLL)

    def fail(self, deployments: list[Obj], number: int, waiting: list[str]) -> None:
        why = "; ".join(f"{name}: {reason(self.cluster.get('Deployment', name))}"
                        for name in waiting)
        tail = self.pod_logs({rel.RELEASE: str(number), **rel.selected_labels(self.app,
                                                                              self.env)})
        for obj in deployments:
            self.cluster.patch("Deployment", obj["metadata"]["name"], {
                "spec": {"replicas": 0},
                "metadata": {"annotations": {rel.STATUS: "failed", rel.FAILURE: why[:500]}}})
        raise DeployFailed(f"release {number} did not become Available within "
                           f"{self.spec.deploy.timeout:.0f}s ({why}); the Service still selects "
                           "the previous release, and release "
                           f"{number}'s Deployments are scaled to 0",
                           hint=f"kubectl -n {self.cluster.namespace} describe deployment "
                           f"{waiting[0]}", log_tail=tail)

    def go_live(self, switch: list[Obj], number: int, previous: int | None) -> None:
        for obj in switch:
            self.cluster.apply(obj)
        stamp = now_text(self.clock)
        self.mark(number, {rel.STATUS: "active", rel.DEPLOYED: stamp})
        if previous is not None and previous != number:
            self.mark(previous, {rel.STATUS: "previous", rel.RETIRED: stamp})
            for d in self.deployments():  # a worker of the old release takes no traffic:
                if rel.release_of(d) == previous and not d["metadata"]["name"].endswith(
                        f"-web-r{previous}"):  # stopping it at once runs one version of jobs
                    self.cluster.patch("Deployment", d["metadata"]["name"],
                                       {"spec": {"replicas": 0}})
        self.progress(f"the Service {self.app}-web selects release {number}")

    def mark(self, number: int, notes: dict[str, str]) -> None:
        for d in self.deployments():
            if rel.release_of(d) == number:
                self.cluster.patch("Deployment", d["metadata"]["name"],
                                   {"metadata": {"annotations": notes}})

    def tidy(self, live: int) -> None:
        """keep_previous and keep_releases: see release.retention."""
        by_number: dict[int, list[Obj]] = {}
        for d in self.deployments():
            by_number.setdefault(rel.release_of(d) or 0, []).append(d)
        kept = [rel.Kept(n, rel.notes_of(ds[0]).get(rel.STATUS, ""),
                         sum(int(d.get("spec", {}).get("replicas", 1) or 0) for d in ds),
                         parse_time(rel.notes_of(ds[0]).get(rel.RETIRED)))
                for n, ds in by_number.items()]
        scale, delete = rel.retention(kept, live, now=self.clock(),
                                      keep_previous=self.spec.deploy.keep_previous,
                                      keep_releases=self.spec.deploy.keep_releases)
        for n in scale:
            for d in by_number[n]:
                status = rel.notes_of(d).get(rel.STATUS)
                notes = {rel.STATUS: "retired"} if status in {"previous", "active"} else {}
                self.cluster.patch("Deployment", d["metadata"]["name"], {
                    "spec": {"replicas": 0}, "metadata": {"annotations": notes}})
        for n in delete:
            for d in by_number[n]:
                self.cluster.delete("Deployment", d["metadata"]["name"])
            self.cluster.delete("ConfigMap", rel.config_name_of(self.app, n))
            self.cluster.delete("Secret", rel.secret_name_of(self.app, n))
            self.cluster.delete("Job", rel.job_name(self.app, n))

    def pod_logs(self, labels: dict[str, str], lines: int = 20) -> str:
        out = []
        for pod in self.cluster.list("Pod", labels)[:3]:
            name = pod["metadata"]["name"]
            text = self.cluster.log(name, tail=lines).rstrip("\n")
            if text:
                out.append("\n".join(f"{name}: {line}" for line in text.splitlines()))
        return "\n".join(out)

    # rollback -----------------------------------------------------------------------------
    def rollback(self, target: int | None) -> Outcome:
        self.check_namespace()
        with self.locked("rollback"):
            return self._rollback(target)

    def _rollback(self, target: int | None) -> Outcome:
        live = self.live()
        by_number: dict[int, list[Obj]] = {}
        for d in self.deployments():
            by_number.setdefault(rel.release_of(d) or 0, []).append(d)
        if target is None:
            older = [n for n, ds in by_number.items() if live is not None and n < live
                     and rel.notes_of(ds[0]).get(rel.STATUS) != "failed"]
            if not older:
                raise NotFound(f"{self.app} ({self.env}): no release before {live} is kept in "
                               f"namespace {self.cluster.namespace}",
                               hint="headway releases lists what is kept")
            target = max(older)
        if target == live:
            return Outcome(target, live, f"release {target} is already live", changed=False)
        if target not in by_number:
            raise NotFound(f"release {target} of {self.app} ({self.env}) is not kept in "
                           f"namespace {self.cluster.namespace}",
                           hint="headway releases lists what is kept")
        deployments = by_number[target]
        for d in deployments:
            replicas = int(rel.notes_of(d).get(rel.REPLICAS, "1") or 1)
            self.cluster.patch("Deployment", d["metadata"]["name"], {"spec": {"replicas": replicas}})
        self.wait_available(deployments, target)
        self.go_live(rel.switch(self.spec, self.env, target), target, live)
        self.tidy(target)
        return Outcome(target, live, f"release {target} is live again"
                       + (f" (release {live} kept warm)" if live else ""))


def available(obj: Obj | None) -> bool:
    """Kubernetes' own rule (kubectl rollout status): the controller saw this generation, and
    every wanted replica is updated and available."""
    if not obj:
        return False
    spec, status = obj.get("spec", {}), obj.get("status", {}) or {}
    wanted = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    if int(status.get("observedGeneration", 0)) < int(obj["metadata"].get("generation", 0)):
        return False
    if wanted == 0:
        return True
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    return (int(status.get("updatedReplicas", 0)) >= wanted
            and int(status.get("availableReplicas", 0)) >= wanted
            and conditions.get("Available") == "True")


def reason(obj: Obj | None) -> str:
    if not obj:
        return "deleted"
    status = obj.get("status", {}) or {}
    for c in status.get("conditions") or []:
        if c.get("status") != "True" and c.get("message"):
            return str(c["message"])
    return (f"{int(status.get('availableReplicas', 0))} of "
            f"{obj.get('spec', {}).get('replicas', 1)} replicas available")

