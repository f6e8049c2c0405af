"""Request metrics: the log-line parser and histogram maths on data, then the whole path with
real HAProxy: requests through the router, scraped from /metrics and shown by `status`."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from headway.observer.requests import BUCKETS, Counts, Request, parse, quantile
from tests.conftest import App


def test_parse_log_lines() -> None:
    assert parse("be_shop_production web-r12-a1b2c3 200 16") == Request(
        "shop", "production", 12, "2xx", 0.016)
    assert parse("be_shop-eu_staging <NOSRV> 503 3004") == Request(
        "shop-eu", "staging", None, "5xx", 3.004)
    assert parse("be_shop_production web-r1-aa -1 -1") == Request(
        "shop", "production", 1, "5xx", 0.0)
    assert parse("fe_router_metrics - 200 1") is None
    assert parse("garbage") is None


def test_quantile_is_the_upper_bound_of_its_bucket() -> None:
    c = Counts()
    for _ in range(98):
        c.add("2xx", 0.004)
    c.add("2xx", 0.2)
    c.add("5xx", 3.0)
    assert quantile(c.hist, 0.5) == 0.005  # 4 ms lies in (2.5 ms, 5 ms]
    assert quantile(c.hist, 0.99) == 0.2
    assert quantile(c.hist, 1.0) == 3.0
    assert BUCKETS.index(0.2) < BUCKETS.index(3.0)
    assert quantile(Counts().hist, 0.99) is None


@pytest.mark.integration
def test_requests_are_counted_per_release_and_exported(app: App) -> None:
    app.run("deploy")
    with httpx.Client() as client:
        for _ in range(40):
            assert client.get(app.url).status_code == 200
        assert client.get(app.url + "missing").status_code == 404
    app.set_version("v2")
    app.run("deploy")
    with httpx.Client() as client:
        for _ in range(10):
            client.get(app.url)
    time.sleep(1.5)  # the agent hands over whole seconds
    text = httpx.get(f"http://127.0.0.1:{app.metrics_port}/metrics", timeout=5).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    counts = {(s.labels["release"], s.labels["code"]): s.value
              for s in families["headway_requests"].samples if s.name.endswith("_total")}
    assert counts[("1", "2xx")] == 40 and counts[("1", "4xx")] == 1
    assert counts[("2", "2xx")] == 10
    deploys = [s for s in families["headway_deploys"].samples if s.name.endswith("_total")]
    assert sum(s.value for s in deploys if s.labels["result"] == "succeeded") == 2
    weights = {s.labels["release"]: s.value for s in families["headway_traffic_weight"].samples}
    assert weights == {"1": 0.0, "2": 1.0}
    live = json.loads(app.run("status", "--json").stdout)["traffic"]
    assert {t["release"]: t["requests"] for t in live}.get(2) == 10
    router = httpx.get(f"http://127.0.0.1:{app.router_metrics_port}/metrics", timeout=5).text
    assert "haproxy_backend_http_responses_total" in router
