"""Canary deploys and blue-green analysis, judged on live traffic through real HAProxy."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import App
from tests.load import Load

pytestmark = pytest.mark.integration  # real HAProxy and processes

FAST = 'steps = [20, 100]\npause = "2s"\nmax_wait = "3s"'


def canary(app: App, extra: str = "", analysis: str = "min_requests = 20") -> None:
    app.use_strategy("canary")
    app.configure(deploy__canary=FAST + ("\n" + extra if extra else ""),
                  deploy__canary__analysis=analysis)


def releases(app: App) -> dict[int, str]:
    return {r["number"]: r["status"] for r in json.loads(app.run("releases", "--json").stdout)}


def test_bad_canary_is_stopped_within_seconds_and_traffic_returns(app: App) -> None:
    canary(app, 'pause = "60s"')
    app.run("deploy")
    app.set_version("v2")
    (app.dir / "FAULTS").write_text("errors=0.2")
    with Load(app.url) as load:
        started = time.monotonic()
        result = app.run("deploy", check=False)
        took = time.monotonic() - started
        failed_at_return = load.failed
        time.sleep(1)
    assert result.returncode == 4, result.stderr
    assert "canary at 20% failed: error rate" in result.stderr
    assert '"canary_requests"' in result.stderr  # the figures that decided
    assert took < 20  # pause is 60 s: the judge decided on evidence, not on the clock
    assert load.failed == failed_at_return  # no failure once the deploy had returned
    assert all(version == "v2" for version, code in load.answers if code != 200)
    assert releases(app) == {1: "active", 2: "failed"}
    assert app.version() == "v1"


def test_good_canary_is_promoted_step_by_step(app: App) -> None:
    canary(app)
    app.run("deploy")
    app.set_version("v2")
    with Load(app.url) as load:
        result = app.run("deploy")
    assert "canary at 20%: " in result.stderr or "canary at 20%" in app.run("events").stdout
    assert load.failed == 0
    assert releases(app) == {1: "previous", 2: "active"}
    assert app.version() == "v2"
    assert "analysis.passed" in app.run("events").stdout


def test_good_canary_without_traffic_is_not_failed(app: App) -> None:
    canary(app)
    app.run("deploy")
    app.set_version("v2")
    result = app.run("deploy")  # nobody sends requests: too little data, never a failure
    assert "too little traffic to judge" in result.stderr
    assert releases(app) == {1: "previous", 2: "active"}


def test_manual_canary_waits_for_promote_or_abort(app: App) -> None:
    canary(app, "manual = true")
    app.run("deploy")
    for command, version, code in (("promote", "v2", 0), ("abort", "v2", 4)):
        app.set_version("v3" if command == "abort" else "v2")
        deploy = app.deploy_until("paused: `headway promote`")
        assert app.run(command).returncode == 0
        deploy.wait(timeout=60)
        assert deploy.returncode == code
        assert app.version() == version
    assert "aborted by `headway abort`" in app.run("events").stdout
    assert app.run("promote", check=False).returncode == 7  # nothing running


def test_blue_green_analysis_switches_back_on_a_breach(app: App) -> None:
    app.configure(deploy='analysis = "20s"', deploy__canary__analysis="min_requests = 20")
    app.run("deploy")
    app.set_version("v2")
    (app.dir / "FAULTS").write_text("errors=0.3")
    with Load(app.url) as load:
        result = app.run("deploy", check=False)
        time.sleep(0.5)
    assert result.returncode == 4
    assert "release after the switch failed: error rate" in result.stderr
    assert app.version() == "v1"
    assert releases(app) == {1: "active", 2: "failed"}
    assert load.versions["v1"] > 0
