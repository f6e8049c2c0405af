"""deploy.strategy = "canary" on runtime = "kubernetes", against the FAKE API server
(tests/fake_kube_api.py: no cluster runs here) and a REAL Prometheus (Debian's) that scrapes a
small exporter made for the test: it serves `http_requests_total` and
`http_request_duration_seconds` with `namespace` and `pod` labels for the fake cluster's web
pods of each release, as an app's client library would, healthy or 5xx-heavy per release. The
CLI's deploy promotes a good canary and rolls a bad one back (exit 4); a Prometheus that does
not answer rolls the canary back with a message naming prometheus_url."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from headway.errors import ConfigError, RuntimeFailure
from headway.kube.canary import canary_replicas
from headway.kube.prometheus import DEFAULTS, Prometheus, expand, histogram
from headway.observer.requests import BUCKETS
from tests import test_kube_runtime
from tests.conftest import free_port, prometheus_server
from tests.fake_kube_api import FakeKubeAPI
from tests.test_kube_runtime import NS, TOML, KubeApp, check_applied, replicas, selected

api, kube_app = test_kube_runtime.api, test_kube_runtime.kube_app  # its fixtures
RATE = 40.0  # requests per second per pod
CANARY = """
[deploy.canary]
steps = [50]
pause = "2s"

[deploy.canary.analysis]
min_requests = 20

[observe]
prometheus_url = "{url}"
"""


class Exporter:
    """/metrics for every running web pod the fake API server makes up: its requests since
    it was first scraped, at RATE per second, a share of them 500 for the `bad` releases."""

    def __init__(self, api: FakeKubeAPI) -> None:
        self.api, self.bad, self.first = api, set[str](), dict[str, float]()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                data = exporter.text().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def text(self) -> str:
        with self.api.lock:
            pods = self.api.made_up_pods(NS)
        lines = []
        for pod in pods:
            name, labels = pod["metadata"]["name"], pod["metadata"]["labels"]
            if labels.get("app.kubernetes.io/component") != "web" or "job-name" in labels:
                continue
            seen = self.first.setdefault(name, time.monotonic())
            n = int(RATE * (time.monotonic() - seen))
            errors = int(n * 0.3) if labels.get("headway.dev/release") in self.bad else 0
            tag = f'namespace="{NS}",pod="{name}"'
            lines += [f'http_requests_total{{{tag},code="200"}} {n - errors}',
                      f'http_requests_total{{{tag},code="500"}} {errors}']
            for le, share in (("0.005", 0.5), ("0.01", 0.9), ("0.05", 1.0), ("+Inf", 1.0)):
                lines.append(f'http_request_duration_seconds_bucket{{{tag},le="{le}"}} '
                             f"{int(n * share)}")
            lines += [f"http_request_duration_seconds_count{{{tag}}} {n}",
                      f"http_request_duration_seconds_sum{{{tag}}} {n * 0.006:.3f}"]
        return "\n".join(lines) + "\n"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def exporter(api: FakeKubeAPI) -> Iterator[Exporter]:
    made = Exporter(api)
    yield made
    made.stop()


@pytest.fixture
def prometheus(exporter: Exporter, tmp_path: Path) -> Iterator[str]:
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "pods", "honor_labels": True,
                            "static_configs": [{"targets": [exporter.address]}]}]}))
    with prometheus_server(config, tmp_path / "tsdb") as url:
        yield url


def canary_toml(url: str) -> str:
    return TOML.format(timeout="10s", namespace=NS).replace(
        "[deploy]\n", '[deploy]\nstrategy = "canary"\n').replace(
        'keep_previous = "0s"', 'keep_previous = "10m"') + CANARY.format(url=url)


@pytest.mark.integration  # Prometheus
def test_canary_judged_from_prometheus_promotes_a_good_release_and_rolls_back_a_bad_one(
        kube_app: KubeApp, api: FakeKubeAPI, exporter: Exporter, prometheus: str) -> None:
    (kube_app.dir / "headway.toml").write_text(canary_toml(prometheus))
    first = kube_app.invoke("deploy")  # nothing to compare with: blue-green (in process)
    assert "release 1 is live" in first and selected(api) == "1"

    good = kube_app.run("deploy", "--force")
    assert "release 2 is live after its canary" in good.stdout, good.stderr
    assert "canary at 50% (2 of 4 pods, 50%): pass" in good.stderr
    assert selected(api) == "2" and replicas(api, "hello-web-r2") == 2
    assert replicas(api, "hello-web-r1") == 2  # kept warm: the stable becomes the previous
    both = [r.body["spec"]["selector"] for r in api.received if r.body and r.verb == "PATCH"
            and r.body.get("kind") == "Service" and "dryRun" not in r.query]
    assert {"app.kubernetes.io/name": "hello", "app.kubernetes.io/component": "web",
            "headway.dev/environment": "production"} in both  # both releases, then release 2

    exporter.bad.add("3")
    bad = kube_app.run("deploy", "--force", code=4)
    assert "canary at 50% (2 of 4 pods, 50%) failed: error rate" in bad.stderr
    assert "selects release 2 alone again" in bad.stderr
    assert selected(api) == "2" and replicas(api, "hello-web-r2") == 2
    assert replicas(api, "hello-web-r3") == 0 and replicas(api, "hello-worker-r3") == 0
    assert replicas(api, "hello-web-r1") == 0  # a third web release would have shared traffic
    rows = json.loads(kube_app.invoke("releases", "--json"))
    assert [(r["number"], r["status"]) for r in rows][:2] == [(3, "failed"), (2, "live")]
    assert "error rate" in rows[0]["failure"]
    check_applied(api)

    broken = Prometheus.of(prometheus, {"requests": "sum(rate(x[$window]"})
    with pytest.raises(RuntimeFailure) as refused:  # a user's PromQL that does not parse
        broken.counts(pod="hello-web-r1-.*", namespace=NS, window=5)
    assert f"[observe] prometheus_url ({prometheus}) refused the requests query " \
        "(observe.prometheus_queries.requests): invalid parameter \"query\": 1:15: parse " \
        "error: unclosed left parenthesis" in refused.value.message
    assert "sum(rate(x[5s]" in str(refused.value.hint)


def test_no_answer_from_prometheus_rolls_the_canary_back_naming_prometheus_url(
        kube_app: KubeApp, api: FakeKubeAPI) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens
    (kube_app.dir / "headway.toml").write_text(canary_toml(url))
    kube_app.invoke("deploy")
    failed = kube_app.invoke("deploy", "--force", code=4)
    assert f"[observe] prometheus_url ({url}) did not answer the requests query" in failed
    assert "the judge cannot judge release 2" in failed and "rolled back" in failed
    assert selected(api) == "1" and replicas(api, "hello-web-r2") == 0
    assert replicas(api, "hello-web-r1") == 2


# units ------------------------------------------------------------------------------------------
def test_canary_replicas_approximate_the_share_beside_an_untouched_stable() -> None:
    assert [canary_replicas(2, s) for s in (10, 50, 75, 100)] == [1, 2, 6, 2]
    assert canary_replicas(9, 10) == 1 and canary_replicas(10, 25) == 3


def test_prometheus_buckets_become_the_judges_histogram() -> None:
    vector = [{"metric": {"le": le}, "value": [0, str(v)]}
              for le, v in (("0.01", 50), ("0.1", 90), ("1", 100), ("+Inf", 110))]
    hist = histogram(vector)
    assert len(hist) == len(BUCKETS) + 1 and sum(hist) == 110
    assert sum(hist[:BUCKETS.index(0.01) + 1]) == 50  # up to 10 ms
    assert hist[-1] == 10  # beyond the last finite bucket
    assert histogram([]) == [0] * (len(BUCKETS) + 1)
    query = expand(DEFAULTS["errors"], pod="hello-web-r3-.*", namespace="shop", window=11.2)
    assert query == ('sum(increase(http_requests_total{namespace="shop",pod=~"hello-web-r3-.*",'
                     'code=~"5.."}[12s]))')


def test_canary_without_prometheus_url_is_refused_before_the_cluster() -> None:
    from headway.kube.release import refuse_unsupported
    from headway.spec.load import parse_spec

    text = canary_toml("http://x:9090").replace('prometheus_url = "http://x:9090"', "")
    with pytest.raises(ConfigError) as refused:
        refuse_unsupported(parse_spec(text, source="headway.toml"), "headway.toml")
    assert "needs [observe] prometheus_url" in refused.value.message


def test_manual_canary_waits_for_promote_and_abort_and_no_series_is_no_verdict(
        kube_app: KubeApp, api: FakeKubeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    """In process, Prometheus stubbed (its figures: 100 good requests per release; the canary's
    requests query matching no series when `missing`), `headway promote|abort` sent through
    the cluster (the annotation) while the deploy waits."""
    from types import SimpleNamespace

    from headway.cli import kube_runtime
    from headway.kube.prometheus import Prometheus
    from headway.observer.requests import Counts

    toml = kube_app.dir / "headway.toml"
    plan: dict[str, Any] = {"send": None, "missing": False, "calls": 0, "stable": "r1"}

    def counts(self: Prometheus, *, pod: str, namespace: str, window: float) -> Counts | None:
        canary = not pod.startswith(f"hello-web-{plan['stable']}-")
        if canary:
            plan["calls"] += 1
            if plan["send"] and plan["calls"] == 2:  # from "another terminal": the CLI's hook
                ctx = SimpleNamespace(config=toml, env="production")
                assert kube_runtime.signal(ctx, plan["send"])
            if plan["missing"]:
                return None
        out = Counts()
        out.codes["2xx"] = 100
        out.hist[2] = 100
        return out

    monkeypatch.setattr(Prometheus, "counts", counts)
    toml.write_text(canary_toml("http://127.0.0.1:9").replace('pause = "2s"',
                                                              'pause = "1s"\nmanual = true'))
    kube_app.invoke("deploy")

    plan["send"] = "promote"
    promoted = kube_app.invoke("deploy", "--force")
    assert "release 2 is live after its canary" in promoted and plan["calls"] == 2
    assert selected(api) == "2"
    assert "headway.dev/signal" not in api.get(NS, "deployments", "hello-web-r2")[
        "metadata"]["annotations"]

    plan.update(send="abort", calls=0, stable="r2")
    aborted = kube_app.invoke("deploy", "--force", code=4)
    assert "canary at 50% (2 of 4 pods, 50%): aborted by `headway abort`" in aborted
    assert selected(api) == "2" and replicas(api, "hello-web-r3") == 0

    toml.write_text(toml.read_text().replace("manual = true", 'max_wait = "2s"'))
    plan.update(send=None, missing=True, calls=0)
    unseen = kube_app.invoke("deploy", "--force", code=4)
    assert "the judge cannot judge release 4" in unseen
    assert "has no series for the canary release's pods (hello-web-r4-.*)" in unseen
    assert "observe.prometheus_queries.requests" in unseen
    assert selected(api) == "2" and replicas(api, "hello-web-r4") == 0
