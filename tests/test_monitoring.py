"""Generated monitoring against the real thing: promtool checks the rules, and a Prometheus
server (Debian's) scrapes Headway through a deploy, a rollback and a failed deploy: every
dashboard query and alert expression returns data, and the deploy-failed alert fires."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from headway.observer.monitoring import ALERTS, ANNOTATIONS, QUERIES
from tests.conftest import App, prometheus_server

pytestmark = pytest.mark.integration  # promtool, Prometheus, HAProxy and processes


@pytest.fixture
def generated(app: App) -> Path:
    out = app.dir / "monitoring"
    app.run("generate", "monitoring", "--out", str(out), "--interval", "1s")
    return out


def test_promtool_accepts_the_generated_rules_and_config(generated: Path) -> None:
    for what, name in (("rules", "headway-alerts.yml"), ("config", "prometheus.yml")):
        result = subprocess.run(["promtool", "check", what, str(generated / name)],
                                capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in subprocess.run(
        ["promtool", "check", "rules", str(generated / "headway-alerts.yml")],
        capture_output=True, text=True, check=False).stdout


@pytest.fixture
def prometheus(generated: Path, tmp_path: Path) -> Iterator[str]:
    with prometheus_server(generated / "prometheus.yml", tmp_path / "tsdb") as url:
        yield url


def query(url: str, expr: str) -> list[dict]:  # type: ignore[type-arg]
    body = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5).json()
    assert body["status"] == "success", (expr, body)
    return list(body["data"]["result"])


def test_prometheus_scrapes_headway_and_every_query_has_data(app: App, prometheus: str) -> None:
    app.run("deploy")
    with httpx.Client() as client:
        for version in ("v2", None):
            for _ in range(30):
                client.get(app.url)
            if version:
                app.set_version(version)
                app.run("deploy")
    app.run("rollback")
    for _ in range(30):
        httpx.get(app.url)
    app.set_version("v3", broken="crash")
    assert app.run("deploy", check=False).returncode == 4
    time.sleep(4)  # a few scrapes and rule evaluations at 1 s
    exprs = [e for _, e, _ in QUERIES] + [e for _, e, _ in ANNOTATIONS]
    exprs += [e for _, e, _, _, _ in ALERTS]
    for expr in exprs:
        assert query(prometheus, expr), f"no data for {expr}"
    deadline = time.monotonic() + 15
    while True:
        alerts = httpx.get(f"{prometheus}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
        firing = {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}
        if "HeadwayDeployFailed" in firing:
            break
        assert time.monotonic() < deadline, alerts
        time.sleep(0.5)
    assert "HeadwayRouterDown" not in firing and "HeadwayAgentDown" not in firing
