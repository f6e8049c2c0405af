"""runtime = "kubernetes", through the real CLI (a subprocess, a private HEADWAY_HOME and
KUBECONFIG) against tests/fake_kube_api.py: a FAKE API server, since no Kubernetes API server
can run here. What is checked is what Headway sends and how it reacts to the answers a real
server gives for those calls; it has not run against a live cluster. Every object applied
passes test_kubernetes's strict schema check (1.29, 1.32, newest); no secret value reaches
an object that is not a Secret, nor the CLI's output."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from headway.cli.main import cli
from headway.errors import ConfigError, HeadwayError, RuntimeFailure
from headway.kube.cluster import Cluster
from headway.kube.release import Kept, leaks, retention
from headway.kube.rollout import available
from tests.fake_kube_api import FakeKubeAPI
from tests.test_kubernetes import validate

ROOT = Path(__file__).resolve().parents[1]
NS = "shop"
SECRET = "s3cret-token-value-7f1d"
TOML = """[app]
name = "hello"
runtime = "kubernetes"
secrets = ["API_TOKEN"]

[processes.web]
command = "python3 app.py"
replicas = 2

[processes.web.health]
path = "/up"

[processes.worker]
command = "python3 -c 'import time; time.sleep(1e9)'"
cpus = 0.1
memory = "64m"
autoscale = {{ min = 1, max = 3 }}

[release]
command = "python3 -c 'print(1)'"

[deploy]
timeout = "{timeout}"
keep_previous = "0s"

[secrets]
API_TOKEN = "env:HELLO_API_TOKEN"

[env]
GREETING = "hi"

[kubernetes]
namespace = "{namespace}"
"""


class KubeApp:
    """examples/hello on runtime kubernetes, its CLI pointed at the fake by KUBECONFIG."""

    def __init__(self, folder: Path, home: Path, kubeconfig: Path) -> None:
        self.dir, self.home, self.kubeconfig = folder, home, kubeconfig

    def configure(self, *, timeout: str = "10s", namespace: str = NS) -> None:
        (self.dir / "headway.toml").write_text(TOML.format(timeout=timeout, namespace=namespace))

    def run(self, *args: str, code: int = 0, **env: str) -> subprocess.CompletedProcess[str]:
        environ = dict(os.environ, HEADWAY_HOME=str(self.home), KUBECONFIG=str(self.kubeconfig),
                       HELLO_API_TOKEN=SECRET)
        environ.update(env)
        done = subprocess.run([sys.executable, "-m", "headway", *args], cwd=self.dir, env=environ,
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == code, f"headway {' '.join(args)}: {done.returncode}\n" \
            f"{done.stdout}\n{done.stderr}"
        assert SECRET not in done.stdout + done.stderr
        return done

    def invoke(self, *args: str, code: int = 0, **env: str) -> str:
        """The same CLI in this process (click's runner): no interpreter to start, for the
        refusals; its output, and a HeadwayError's message and hint as `headway` prints them."""
        environ = {"HEADWAY_HOME": str(self.home), "KUBECONFIG": str(self.kubeconfig),
                   "HELLO_API_TOKEN": SECRET, **env}
        result = CliRunner().invoke(cli, ["-c", str(self.dir / "headway.toml"), *args],
                                    env=environ)
        error = result.exception
        text = result.output + (f"error: {error.message}\nhint: {error.hint}"
                                if isinstance(error, HeadwayError) else "")
        assert int(getattr(error, "exit_code", result.exit_code)) == code, f"{text}\n{error!r}"
        assert SECRET not in text
        return text


@pytest.fixture
def api() -> Iterator[FakeKubeAPI]:
    fake = FakeKubeAPI(namespaces={NS}, delay=0.2).start()
    yield fake
    fake.stop()


@pytest.fixture
def kube_app(tmp_path: Path, api: FakeKubeAPI) -> KubeApp:
    folder = tmp_path / "hello"
    shutil.copytree(ROOT / "examples" / "hello", folder)
    app = KubeApp(folder, tmp_path / "home", api.kubeconfig(tmp_path / "kubeconfig"))
    app.configure()
    return app


def selected(api: FakeKubeAPI) -> str | None:
    svc = api.get(NS, "services", "hello-web")
    return None if svc is None else svc["spec"]["selector"].get("headway.dev/release")


def replicas(api: FakeKubeAPI, name: str) -> int:
    found = api.get(NS, "deployments", name)
    assert found is not None, name
    return int(found["spec"]["replicas"])


def check_applied(api: FakeKubeAPI) -> None:
    """Every applied object is valid (strict schemas) and only Secrets hold the value."""
    applied = api.applied()
    validate(applied)
    outside = [f"{o['kind']}/{o['metadata']['name']}" for o in applied
               if o["kind"] != "Secret" and SECRET in json.dumps(o)]
    assert not outside, outside
    assert all(SECRET not in json.dumps(r.query) + r.path for r in api.received)


def test_deploy_switches_the_service_then_a_second_deploy_and_a_rollback(
        kube_app: KubeApp, api: FakeKubeAPI) -> None:
    first = kube_app.run("deploy")
    assert "release 1 is live" in first.stdout
    assert selected(api) == "1" and replicas(api, "hello-web-r1") == 2
    job = api.get(NS, "jobs", "hello-release-r1")
    assert job is not None and job["status"]["succeeded"] == 1
    secret = api.get(NS, "secrets", "hello-secrets-r1")
    assert secret is not None and secret["stringData"] == {"API_TOKEN": SECRET}
    env = api.get(NS, "deployments", "hello-web-r1")["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {
        "name": "hello-secrets-r1", "key": "API_TOKEN"}}} in env["env"]
    assert api.get(NS, "configmaps", "hello-env-r1")["data"] == {"GREETING": "hi"}
    assert all(r.query.get("fieldManager") == "headway" and r.query.get("force") == "true"
               for r in api.received if "apply-patch" in r.content_type)

    assert "nothing changed" in kube_app.run("deploy").stdout  # same code, config, secrets
    assert kube_app.run("deploy", "--force").stdout.count("release 2 is live") == 1
    assert selected(api) == "2" and replicas(api, "hello-web-r2") == 2
    assert replicas(api, "hello-web-r1") == 0  # keep_previous = "0s": scaled down at once
    assert replicas(api, "hello-worker-r1") == 0
    hpa = api.get(NS, "horizontalpodautoscalers", "hello-worker")
    assert hpa is not None and hpa["spec"]["scaleTargetRef"]["name"] == "hello-worker-r2"

    rows = json.loads(kube_app.run("releases", "--json").stdout)
    assert [(r["number"], r["status"]) for r in rows] == [(2, "live"), (1, "retired")]

    back = kube_app.run("rollback")
    assert "release 1 is live again" in back.stdout
    assert selected(api) == "1" and replicas(api, "hello-web-r1") == 2
    status = json.loads(kube_app.run("status", "--json").stdout)
    assert status["live"] == 1 and status["namespace"] == NS and status["context"] == "fake"
    assert api.get(NS, "leases", "hello-production-deploy") is None  # the lock is released
    logs = kube_app.run("logs", "--release", "1").stdout
    assert "hello-web-r1-fake0 | hello-web-r1-fake0 listening" in logs
    check_applied(api)


def test_a_release_that_fails_leaves_the_service_on_the_previous_one(
        kube_app: KubeApp, api: FakeKubeAPI) -> None:
    kube_app.configure(timeout="1s")
    kube_app.run("deploy")
    api.never_available.add("hello-web-r2")
    failed = kube_app.run("deploy", "--force", code=4)
    assert "release 2 did not become Available within 1s" in failed.stderr
    assert "Deployment does not have minimum availability" in failed.stderr
    assert selected(api) == "1" and replicas(api, "hello-web-r1") == 2
    assert replicas(api, "hello-web-r2") == 0
    assert api.get(NS, "deployments", "hello-web-r2")["metadata"]["annotations"][
        "headway.dev/status"] == "failed"

    api.failing_jobs.add("hello-release-r3")
    refused = kube_app.run("deploy", "--force", code=4)
    assert "release 3 refused: the release command failed" in refused.stderr
    assert "error: relation already exists" in refused.stderr  # the Job pod's log
    assert api.get(NS, "deployments", "hello-web-r3") is None and selected(api) == "1"
    assert api.get(NS, "secrets", "hello-secrets-r3") is None  # no copy of the values left
    rows = json.loads(kube_app.run("releases", "--json").stdout)
    assert [(r["number"], r["status"]) for r in rows] == [(3, "refused"), (2, "failed"),
                                                          (1, "live")]
    check_applied(api)


def test_bad_input_is_refused_with_what_to_do(kube_app: KubeApp, api: FakeKubeAPI,
                                              tmp_path: Path) -> None:
    # no kubeconfig at all: tests/test_cli.py::test_unsupported_runtime_is_refused_before_...
    api.kubeconfig(tmp_path / "no-current", current=False)
    no_context = kube_app.invoke("deploy", code=2, KUBECONFIG=str(tmp_path / "no-current"))
    assert "no kube context" in no_context and "use-context" in no_context

    kube_app.configure(namespace="nowhere")
    no_ns = kube_app.run("deploy", code=2)  # as a user sees it: a subprocess
    assert "namespace nowhere does not exist in context fake" in no_ns.stderr
    assert "kubectl --context fake create namespace nowhere" in no_ns.stderr

    kube_app.configure()
    api.invalid["Deployment/hello-web-r1"] = ("spec.template.spec.containers[0].image",
                                              "Required value")
    rejected = kube_app.invoke("deploy", code=2)
    assert "rejected Deployment hello-web-r1" in rejected
    assert "spec.template.spec.containers[0].image: Required value" in rejected
    assert api.applied() == []  # the dry run caught it: nothing applied half-way

    api.invalid.clear()
    toml = kube_app.dir / "headway.toml"
    toml.write_text(toml.read_text().replace('GREETING = "hi"', f'GREETING = "{SECRET}"'))
    before = len(api.received)
    pasted = kube_app.invoke("deploy", code=2)
    assert "ConfigMap hello-env-r1 holds the value of API_TOKEN" in pasted
    assert "PATCH" not in [r.verb for r in api.received[before:]]  # not even a dry run
    kube_app.configure()

    api.forbidden.add(("PATCH", "serviceaccounts"))
    forbidden = kube_app.invoke("deploy", code=2)
    assert "context fake may not PATCH ServiceAccount hello" in forbidden
    assert api.applied() == []

    api.forbidden.clear()
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": "hello-production-deploy", "namespace": NS},
             "spec": {"holderIdentity": "headway deploy on ci-7 pid 42",
                      "leaseDurationSeconds": 600, "renewTime": time.strftime(
                          "%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())}}
    api.objects[(NS, "leases", "hello-production-deploy")] = lease
    locked = kube_app.invoke("deploy", code=3)
    assert "headway deploy on ci-7 pid 42 holds hello (production)" in locked
    dry = kube_app.invoke("deploy", "--dry-run")  # a dry run changes nothing: takes no lock
    assert "release 1 would apply: ServiceAccount hello" in dry
    assert "Deployment hello-web-r1" in dry and api.applied() == []
    lease["spec"]["renewTime"] = "2026-01-01T00:00:00.000000Z"  # its holder died long ago
    assert "release 1 is live" in kube_app.invoke("deploy")
    assert api.get(NS, "leases", "hello-production-deploy") is None

    api.stop()
    unreachable = kube_app.invoke("status", code=6)
    assert "cannot be reached" in unreachable and "context fake" in unreachable


# units ------------------------------------------------------------------------------------------
def test_retention_keeps_the_previous_warm_then_scales_and_deletes() -> None:
    kept = [Kept(5, "active", 2, None), Kept(4, "previous", 2, 1000.0),
            Kept(3, "retired", 0, 900.0), Kept(2, "failed", 1, None), Kept(1, "retired", 0, None)]
    assert retention(kept, 5, now=1100.0, keep_previous=600, keep_releases=10) == ([2], [])
    assert retention(kept, 5, now=1700.0, keep_previous=600, keep_releases=3) == ([4], [2, 1])


def test_available_follows_kubectl_rollout_status() -> None:
    def dep(gen: int, seen: int, ok: int, cond: str = "True") -> dict[str, Any]:
        return {"metadata": {"generation": gen}, "spec": {"replicas": 2}, "status": {
            "observedGeneration": seen, "updatedReplicas": ok, "availableReplicas": ok,
            "conditions": [{"type": "Available", "status": cond}]}}
    assert available(dep(2, 2, 2)) and not available(dep(2, 1, 2))
    assert not available(dep(2, 2, 1)) and not available(dep(2, 2, 2, "False"))


def test_a_secret_value_outside_a_secret_is_found() -> None:
    objs = [{"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"X": "abcd1234"}},
            {"kind": "Secret", "metadata": {"name": "s"}, "stringData": {"X": "abcd1234"}}]
    assert leaks(objs, {"TOKEN": "abcd1234", "SHORT": "c"}) == [
        "ConfigMap c holds the value of TOKEN"]


def test_kubeconfig_list_conflict_and_context_in_process(api: FakeKubeAPI, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """KUBECONFIG is a list as kubectl reads it; a 409 names the object (no subprocess)."""
    config = api.kubeconfig(tmp_path / "second", context="other")
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'absent'}:{config}")
    cluster = Cluster.connect(None, NS)
    assert cluster.context == "other" and cluster.namespace_exists()
    with pytest.raises(ConfigError, match="'nope' is not a context of KUBECONFIG=.*other"):
        Cluster.connect("nope", NS)
    api.conflicts.add("Service/hello-web")
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hello-web"},
               "spec": {"ports": [{"port": 80}]}}
    with pytest.raises(RuntimeFailure, match="PATCH Service hello-web .*conflicts"):
        cluster.apply(service)
    assert cluster.get("Service", "hello-web") is None
    monkeypatch.setenv("KUBECONFIG", str(api.kubeconfig(tmp_path / "stale", token="expired")))
    with pytest.raises(ConfigError, match=r"context fake refused its credentials \(401\) to GET "
                       "namespace shop"):
        Cluster.connect(None, NS).namespace_exists()


@pytest.mark.parametrize(("change", "message"), [
    (("cpus = 0.1\n", ""), "headway.toml: processes.worker.autoscale: a HorizontalPod"),
    (("", ""), None),
    (("[kubernetes]", '[accessories.db]\ntype = "postgres"\n[kubernetes]'),
     "accessories.db: runtime \"kubernetes\" runs no accessory"),
])
def test_what_the_runtime_does_not_do_is_refused_before_the_cluster(
        change: tuple[str, str], message: str | None) -> None:
    from headway.kube.release import refuse_unsupported
    from headway.spec.load import parse_spec

    text = TOML.format(timeout="5s", namespace=NS).replace(*change)
    if message is None:
        text = text.replace("[deploy]\n", '[deploy]\nstrategy = "rolling"\n')
        message = "deploy.strategy = 'rolling' is not built for runtime \"kubernetes\""
    with pytest.raises(ConfigError) as refused:
        refuse_unsupported(parse_spec(text, source="headway.toml"), "headway.toml")
    assert message in refused.value.message


def test_run_is_a_job_of_the_live_release_and_accessories_are_refused(
        kube_app: KubeApp, api: FakeKubeAPI) -> None:
    kube_app.invoke("deploy")
    done = kube_app.run("run", "--", "python3", "manage.py", "check")  # as a user sees it
    assert '["python3", "manage.py", "check"] in ' in done.stdout and "exit 0" in done.stdout
    assert "running in Job hello-run-r1-" in done.stderr
    (name,) = [n for n in api.names(NS, "jobs") if n.startswith("hello-run-r1-")]
    pod = api.get(NS, "jobs", name)["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "run"  # no Service's
    assert "ports" not in container and "readinessProbe" not in container
    assert {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {
        "name": "hello-secrets-r1", "key": "API_TOKEN"}}} in container["env"]
    assert container["envFrom"] == [{"configMapRef": {"name": "hello-env-r1"}}]

    api.run_exit = 3
    assert "exit 3" in kube_app.invoke("run", "--", "false", code=3)
    assert selected(api) == "1"  # a one-off changes no release
    check_applied(api)

    for command in (["accessory", "status"], ["backup", "list"]):
        refused = kube_app.invoke(*command, code=2)
        assert f"headway {command[0]} is not built for runtime \"kubernetes\"" in refused
        assert "external = true" in refused
    no_canary = kube_app.invoke("promote", code=7)
    assert "no canary of hello (production) is running in namespace shop" in no_canary
