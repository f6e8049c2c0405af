"""deploy.strategy = "canary" with runtime = "kubernetes": traffic shares by replica counts.
The new release's web Deployment runs beside the live (stable) one and the web Service selects
the app's web pods of both (its selector drops headway.dev/release: the labels common to both
releases); the share of each step of [deploy.canary] steps is approximated by the canary's
replicas against the stable's, which are never scaled down. At each step headway.observer.judge
compares the two releases over the same window, from Prometheus (headway.kube.prometheus). A
failing verdict, `headway abort`, a Prometheus that does not answer, or any error puts the
Service back on the stable release alone and scales the canary to 0 (the deploy fails, exit 4);
passing every step promotes: the new release's Deployments scaled up, the Service switched to
it alone, the stable kept as blue-green keeps a previous release. Any other web release is
scaled to 0 before the canary starts (the Service then selects every web pod of the app).
Never prints (progress goes to the rollout's callback). The calls are cluster.API_CALLS."""

from __future__ import annotations

import copy
import json
import math
from typing import TYPE_CHECKING

from headway.errors import DeployFailed, HeadwayError, NotFound, RuntimeFailure
from headway.kube import release as rel
from headway.kube.cluster import Obj
from headway.kube.prometheus import Prometheus, pod_regex
from headway.observer.judge import Limits, Verdict, judge
from headway.observer.requests import Counts

if TYPE_CHECKING:
    from headway.kube.rollout import Outcome, Rollout

SIGNAL = "headway.dev/signal"  # promote | abort, left by `headway promote|abort`
JUDGE_EVERY = 1.0  # seconds between two verdicts
REPORT_EVERY = 2.0


def canary_replicas(stable: int, share: int) -> int:
    """Canary replicas for `share` percent of the pods beside `stable` ones (at least 1)."""
    if share >= 100:
        return stable
    return max(1, round(stable * share / (100 - share)))


def service_for_both(rollout: Rollout, number: int) -> Obj:
    svc = rel.switch(rollout.spec, rollout.env, number)[0]
    del svc["spec"]["selector"][rel.RELEASE]
    svc["spec"]["selector"][rel.ENVIRONMENT] = rollout.env
    return svc


def send_signal(rollout: Rollout, what: str) -> int:
    """`headway promote|abort`: an annotation on the running canary's web Deployment, read by
    the deploy at its next verdict. The release number, or NotFound."""
    for d in rollout.deployments():
        notes = rel.notes_of(d)
        if notes.get(rel.STATUS) == "canary" and "-web-r" in d["metadata"]["name"]:
            rollout.cluster.patch("Deployment", d["metadata"]["name"],
                                  {"metadata": {"annotations": {SIGNAL: what}}})
            return rel.release_of(d) or 0
    raise NotFound(f"no canary of {rollout.app} ({rollout.env}) is running in namespace "
                   f"{rollout.cluster.namespace}",
                   hint="promote and abort act on a canary while `headway deploy` runs")


class Canary:
    def __init__(self, rollout: Rollout, objects: rel.ReleaseObjects, number: int,
                 live: int) -> None:
        self.r, self.objects, self.number, self.live = rollout, objects, number, live
        observe = rollout.spec.observe
        assert observe.prometheus_url  # release.refuse_unsupported checked it
        self.prometheus = Prometheus.of(observe.prometheus_url,
                                        {str(k): v for k, v in
                                         observe.prometheus_queries.items()})
        self.web = rel.deployment_name(rollout.app, "web", number)
        self.stable_web = rel.deployment_name(rollout.app, "web", live)

    def run(self) -> Outcome:
        from headway.kube.rollout import Outcome

        stable = self.r.cluster.get("Deployment", self.stable_web)
        if stable is None:
            raise NotFound(f"the live release {self.live} has no Deployment {self.stable_web} "
                           f"in namespace {self.r.cluster.namespace}: no stable to compare",
                           hint="headway rollback to a kept release, or deploy with "
                           "deploy.strategy = \"blue-green\"")
        replicas = int((stable.get("spec") or {}).get("replicas") or 1)
        self.retire_other_webs()
        steps = self.r.spec.deploy.canary.steps
        try:
            for obj in self.objects.deployments:  # only the web takes part; the rest at 0
                first = canary_replicas(replicas, steps[0]) if obj["metadata"]["name"] == \
                    self.web else 0
                self.r.cluster.apply(self.starting(obj, first))
            for index, share in enumerate(steps[:-1]):
                count = canary_replicas(replicas, share)
                if index:
                    self.r.cluster.patch("Deployment", self.web, {"spec": {"replicas": count}})
                self.r.wait_available([d for d in self.objects.deployments
                                       if d["metadata"]["name"] == self.web], self.number)
                if index == 0:
                    self.r.cluster.apply(service_for_both(self.r, self.number))
                actual = round(100 * count / (count + replicas))
                self.watch(f"canary at {share}% ({count} of {count + replicas} pods, "
                           f"{actual}%)")
            self.promote()
        except BaseException as exc:
            self.back_to_stable(exc)
            if isinstance(exc, RuntimeFailure) and "prometheus_url" in exc.message:
                raise DeployFailed(f"the judge cannot judge release {self.number}: "
                                   f"{exc.message}; the canary is rolled back (the Service "
                                   f"selects release {self.live} alone, release {self.number} "
                                   "scaled to 0)", hint=exc.hint) from None
            raise
        self.r.go_live(self.objects.switch, self.number, self.live)
        self.r.tidy(self.number)
        return Outcome(self.number, self.live, f"release {self.number} is live after its "
                       f"canary ({self.r.spec.deploy.canary.steps[:-1]}%); release "
                       f"{self.live} kept for rollback")

    def starting(self, obj: Obj, replicas: int) -> Obj:
        out = copy.deepcopy(obj)
        out["spec"]["replicas"] = replicas
        if out["metadata"]["name"] == self.web:
            out["metadata"]["annotations"][rel.STATUS] = "canary"
        return out

    def retire_other_webs(self) -> None:
        """The Service selects every web pod of the app during the canary: only two releases
        may have any."""
        for d in self.r.deployments():
            number = rel.release_of(d)
            name = d["metadata"]["name"]
            if number in (self.live, self.number) or name != rel.deployment_name(
                    self.r.app, "web", number or 0):
                continue
            if int((d.get("spec") or {}).get("replicas") or 0) > 0:
                self.r.progress(f"scaling release {number}'s {name} to 0: during the canary "
                                "the Service selects every web pod of the app")
                status = rel.notes_of(d).get(rel.STATUS)
                notes = {rel.STATUS: "retired"} if status in {"previous", "active"} else {}
                self.r.cluster.patch("Deployment", name, {"spec": {"replicas": 0},
                                                          "metadata": {"annotations": notes}})

    def watch(self, label: str) -> Verdict:
        """Verdicts until the step passes (pause elapsed), fails, or is promoted/aborted."""
        spec = self.r.spec.deploy.canary
        limits = Limits(**spec.analysis.model_dump())
        since, reported = self.r.clock(), 0.0
        ns = self.r.cluster.namespace
        pods = {"canary": pod_regex(self.r.app, "web", self.number),
                "stable": pod_regex(self.r.app, "web", self.live)}
        unseen = set(pods)  # whose requests query has matched no series yet
        while True:
            self.r.sleep(JUDGE_EVERY)
            window = self.r.clock() - since
            found = {who: self.prometheus.counts(pod=pod, namespace=ns, window=window)
                     for who, pod in pods.items()}
            unseen -= {who for who, counts in found.items() if counts is not None}
            verdict = judge(found["canary"] or Counts(), found["stable"] or Counts(), limits)
            figures = json.dumps({k: v for k, v in verdict.figures.items() if v is not None})
            signal = self.take_signal()
            if signal == "abort":
                raise DeployFailed(f"{label}: aborted by `headway abort` ({figures})")
            if verdict.decision == "fail":
                raise DeployFailed(f"{label} failed: {verdict.reason} ({figures}); the Service "
                                   f"selects release {self.live} alone again and release "
                                   f"{self.number}'s Deployments are scaled to 0",
                                   hint="the figures are Prometheus' ([observe] prometheus_url "
                                   f"{self.prometheus.url}); headway releases shows the "
                                   "failure")
            if signal == "promote":
                return verdict
            if not spec.manual and verdict.decision == "pass" and window >= spec.pause:
                self.r.progress(f"{label}: pass — {figures}")
                return verdict
            if not spec.manual and verdict.decision == "wait" and window >= spec.max_wait \
                    and unseen:
                raise RuntimeFailure(
                    f"{label}: [observe] prometheus_url ({self.prometheus.url}) has no series "
                    f"for the {' and the '.join(sorted(unseen))} release's pods "
                    f"({', '.join(pods[w] for w in sorted(unseen))}) after "
                    f"{math.ceil(window)}s", hint="check observe.prometheus_queries.requests "
                    "(its metric names and labels) against what Prometheus scrapes; the "
                    f"query sent: {self.prometheus.queries['requests']}")
            if not spec.manual and verdict.decision == "wait" and window >= spec.max_wait:
                self.r.progress(f"{label}: too little traffic to judge ({verdict.reason}) in "
                                f"{math.ceil(window)}s; moving on, as the pods are Available")
                return verdict
            if window - reported >= REPORT_EVERY:
                reported = window
                wait = "; paused: `headway promote` or `headway abort`" if spec.manual else ""
                self.r.progress(f"{label}: {verdict.decision} — {figures}{wait}")

    def take_signal(self) -> str | None:
        found = self.r.cluster.get("Deployment", self.web) or {}
        signal = rel.notes_of(found).get(SIGNAL)
        if signal:
            self.r.cluster.patch("Deployment", self.web,
                                 {"metadata": {"annotations": {SIGNAL: None}}})
        return signal

    def promote(self) -> None:
        self.r.progress(f"promoting release {self.number}: scaling its Deployments up")
        for obj in self.objects.deployments:
            replicas = int(rel.notes_of(obj).get(rel.REPLICAS, "1") or 1)
            self.r.cluster.patch("Deployment", obj["metadata"]["name"],
                                 {"spec": {"replicas": replicas}})
        self.r.wait_available(self.objects.deployments, self.number)

    def back_to_stable(self, exc: BaseException) -> None:
        """The Service on the stable release alone, the canary at 0 and marked failed."""
        why = exc.message if isinstance(exc, HeadwayError) else type(exc).__name__
        try:
            self.r.cluster.apply(rel.switch(self.r.spec, self.r.env, self.live)[0])
            for obj in self.objects.deployments:
                self.r.cluster.patch("Deployment", obj["metadata"]["name"], {
                    "spec": {"replicas": 0}, "metadata": {"annotations": {
                        rel.STATUS: "failed", rel.FAILURE: why[:500], SIGNAL: None}}})
        except HeadwayError as undo:
            raise RuntimeFailure(
                f"release {self.number}'s canary failed ({why}) and could not be rolled back: "
                f"{undo.message}", hint=f"headway rollback {self.live} puts the Service on the "
                "stable release alone") from None
        self.r.progress(f"the Service {self.r.app}-web selects release {self.live} alone again")
