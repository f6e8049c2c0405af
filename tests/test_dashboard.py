"""The web dashboard: shown in a real browser (Debian's chromium driven by selenium) with a
rollback from the page under load, a canary followed step by step over its JSON, and over
plain HTTP the refusals (no token, another Origin or Host, GET) and that no page shows a
secret value. The HTTP checks run on a store filled by hand, with no deploy, to stay fast."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from headway.dashboard import actions, wsgi
from headway.observer.requests import BUCKETS
from headway.store import Instance, Store
from tests.conftest import App, free_port
from tests.load import Load

SECRET = "s3cr3t-value-that-must-never-show"
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


# HTTP level, on a store filled by hand ------------------------------------------------------
@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A dashboard on a free port over a store with one app, two releases and an instance
    whose environment holds a secret value."""
    home = tmp_path / "home"
    store = Store(home)
    store.upsert_app("shop", "production", free_port(), "127.0.0.1", [], True, "/up", 1.0)
    for number, status in ((1, "previous"), (2, "active")):
        store.db.execute(
            "INSERT INTO releases(app, env, number, status, digest, path, spec, created, "
            "deployed, warm_until) VALUES(?,?,?,?,?,?,?,?,?,?)",
            ("shop", "production", number, status, f"sha256:{number}abc", "/nowhere",
             json.dumps({"spec": {"env": {"API_KEY": SECRET}}, "env": {"API_KEY": SECRET}}),
             time.time(), time.time(), time.time() + 600 if status == "previous" else None))
    log = tmp_path / "web.log"
    log.write_text("started\nlistening on 8000\n")
    store.add_instance(Instance(
        id="shop-r2-0a1b", app="shop", env="production", release=2, process="web", port=8000,
        argv=["python3", "app.py"], cwd="/nowhere", env_vars={"API_KEY": SECRET},
        log=str(log), stop_timeout=5, desired="running", state="running"))
    store.event("shop", "production", "deploy.succeeded", "release 2 live", release=2)
    now = int(time.time())
    store.add_samples([("shop", "production", 2, now - s, 20, 0, 0, 1, json.dumps([21] + [0] * len(BUCKETS)),
                        0.2) for s in range(1, 40)])
    store.close()
    port = free_port()
    from prometheus_client import CollectorRegistry, make_wsgi_app

    agent = open(home / "agent.lock", "a")  # noqa: SIM115 - this test serves as the agent
    fcntl.flock(agent, fcntl.LOCK_EX | fcntl.LOCK_NB)  # so the CLI it runs starts none

    app = wsgi.Dashboard(home, make_wsgi_app(CollectorRegistry()), address="127.0.0.1",
                         port=port, enabled=True)
    server = wsgi.serve("127.0.0.1", port, app)
    yield f"http://127.0.0.1:{port}", home
    server.shutdown()
    server.server_close()
    agent.close()


def _events(home: Path) -> list[str]:
    store = Store(home)
    try:
        return [e["kind"] for e in store.events("shop", "production")]
    finally:
        store.close()


def test_every_page_shows_the_app_and_no_secret_value(served: tuple[str, Path]) -> None:
    url, _ = served
    pages = ["/", "/api/overview", "/app/shop/production", "/api/app/shop/production",
             "/app/shop/production/logs/shop-r2-0a1b",
             "/api/app/shop/production/logs/shop-r2-0a1b", "/static/dash.js",
             "/static/dash.css"]
    with httpx.Client(base_url=url) as client:
        for path in pages:
            resp = client.get(path)
            assert resp.status_code == 200, path
            assert SECRET not in resp.text and "API_KEY" not in resp.text, path
        page = client.get("/app/shop/production").text
        assert 'id="live-release">release 2<' in page and "release 1" in page  # live, warm
        assert "<svg" in page and "<polyline" in page  # the last hour's chart
        assert "listening on 8000" in client.get("/app/shop/production/logs/shop-r2-0a1b").text
        assert client.get("/metrics").headers["content-type"].startswith("text/plain")


def test_an_action_without_the_token_or_from_another_site_is_refused(
        served: tuple[str, Path]) -> None:
    url, home = served
    token = actions.token(home)
    rollback = "/api/app/shop/production/rollback"
    own = url.removeprefix("http://")
    refused = [({}, "POST"),  # no token
               ({"X-Headway-Token": "wrong" + token}, "POST"),
               ({"X-Headway-Token": token, "Origin": "http://evil.example"}, "POST"),
               ({"X-Headway-Token": token, "Sec-Fetch-Site": "cross-site"}, "POST"),
               ({"X-Headway-Token": token}, "GET"),
               ({"X-Headway-Token": token}, "PUT")]
    with httpx.Client(base_url=url, timeout=30) as client:
        for headers, method in refused:
            resp = client.request(method, rollback, headers=headers)
            assert resp.status_code == 403, (headers, method, resp.text)
        # a name that resolves here but is not this dashboard's (DNS rebinding)
        assert client.get("/", headers={"Host": "evil.example"}).status_code == 421
        assert client.post(rollback, headers={"X-Headway-Token": token,
                                               "Host": "evil.example"}).status_code == 421
        assert _events(home) == ["deploy.succeeded"]  # nothing was done or recorded
        # the same request with the token from its own page acts (promote: no canary runs)
        resp = client.post("/api/app/shop/production/promote",
                           headers={"X-Headway-Token": token, "Origin": f"http://{own}"})
    assert resp.status_code == 409 and "no deploy of shop" in resp.json()["message"]
    assert _events(home).count("dashboard.promote") == 2  # requested, and how it ended


def test_only_its_own_address_may_act_never_a_name_from_elsewhere() -> None:
    loopback, anywhere = actions.Hosts("127.0.0.1", 9580), actions.Hosts("0.0.0.0", 9580)
    assert {"127.0.0.1:9580", "localhost:9580"} <= loopback.names
    for host in ("evil.example:9580", "127.0.0.1:9581", "10.1.2.3:9580", None):
        assert host not in loopback
    assert "10.1.2.3:9580" in anywhere and "[fd00::1]:9580" in anywhere
    assert "evil.example:9580" not in anywhere and "10.1.2.3:80" not in anywhere


def test_token_is_made_once_private_and_printed_by_the_cli(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = dict(os.environ, HEADWAY_HOME=str(tmp_path / "home"))
    run = [sys.executable, "-m", "headway", "dashboard", "token"]
    first = subprocess.run(run, env=env, capture_output=True, text=True, check=True).stdout
    assert actions.token(tmp_path / "home") == first.strip()  # made once, then the same
    assert len(first.strip()) >= 40
    mode = stat.S_IMODE((tmp_path / "home" / actions.TOKEN_FILE).stat().st_mode)
    assert mode == 0o600
    assert actions.token_matches(tmp_path / "home", first.strip())
    assert not actions.token_matches(tmp_path / "home", first.strip()[:-1])


# end to end: a real deploy, the agent serving the dashboard -------------------------------
def _dashboard_app(app: App) -> str:
    app.configure(observe=f"metrics_port = {app.metrics_port}\ndashboard = true")
    return f"http://127.0.0.1:{app.metrics_port}"


@pytest.fixture
def browser() -> Iterator[Any]:
    if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
        pytest.fail("chromium is not installed: run scripts/setup.sh "
                    "(apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="headway-chromium-")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 "--window-size=1100,1500", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.integration
def test_browser_follows_a_canary_promotes_it_and_rolls_back_with_no_failed_request(
        app: App, browser: Any) -> None:
    """One deploy pair for three things a person does on the page: watch a canary step by
    step with the judge's figures, promote it, then roll back, all under load."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    t0 = time.monotonic()
    base = _dashboard_app(app)
    app.use_strategy("canary")
    app.configure(deploy__canary='steps = [20, 100]\npause = "2s"\nmanual = true',
                  deploy__canary__analysis="min_requests = 20")
    app.run("deploy")
    print(f"first deploy: {time.monotonic() - t0:.1f}s")
    token = actions.token(app.home)  # what `headway dashboard token` prints (tested above)
    shots = Path(os.environ.get("HEADWAY_SCREENSHOTS", tempfile.gettempdir()))
    app.set_version("v2")

    def text(element: str) -> str:  # read at once: the page replaces <main> every 2 s
        return str(driver.execute_script(
            "var e = document.getElementById(arguments[0]); return e ? e.textContent : ''",
            element))

    def live() -> str:
        return text("live-release")

    def click(action: str) -> None:
        WebDriverWait(driver, 10, ignored_exceptions=[StaleElementReferenceException]).until(
            lambda d: d.find_element(By.CSS_SELECTOR, f'button[data-action$="/{action}"]')
            .click() or True)

    with Load(app.url) as load:
        deploy = app.deploy_until("paused: `headway promote`")
        print(f"canary paused: {time.monotonic() - t0:.1f}s")
        driver.get(f"{base}/app/hello/production")
        assert live() == "release 1"
        # the canary, step by step: the page refreshes itself until the judge has figures
        WebDriverWait(driver, 30).until(
            lambda d: re.search(r"canary_requests\s*[1-9]", text("judge")))
        assert "start" in text("steps") and "canary" in text("steps")
        assert "Judge: canary at 20%" in text("judge")
        driver.save_screenshot(str(shots / "headway-dashboard-canary.png"))
        driver.find_element(By.CSS_SELECTOR, "#tokenbox summary").click()
        driver.find_element(By.ID, "token").send_keys(token)
        click("promote")
        deploy.wait(timeout=90)
        assert deploy.returncode == 0
        WebDriverWait(driver, 30).until(lambda d: live() == "release 2")
        print(f"promoted: {time.monotonic() - t0:.1f}s")
        click("rollback")
        WebDriverWait(driver, 30).until(lambda d: live() == "release 1")
    driver.save_screenshot(str(shots / "headway-dashboard.png"))
    driver.set_window_size(412, 915)  # a phone: nothing wider than the screen but tables
    time.sleep(0.5)
    assert driver.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth")
    driver.save_screenshot(str(shots / "headway-dashboard-phone.png"))
    print(f"dashboard screenshots: {shots / 'headway-dashboard-canary.png'}, "
          f"{shots / 'headway-dashboard.png'}, {shots / 'headway-dashboard-phone.png'}")
    assert load.failed == 0, load.failures
    assert load.versions["v2"] and load.versions["v1"]  # traffic moved while it ran
    assert app.version() == "v1"
    assert "release 1 is live again" in text("flash")
    store = Store(app.home)
    events = {(e["kind"], e["message"]) for e in store.events("hello", "production")}
    store.close()
    assert {"dashboard.promote", "dashboard.rollback"} <= {kind for kind, _ in events}
    assert any(kind == "rollback" and message.endswith("by dashboard")
               for kind, message in events)  # the engine's own event names the source
