"""The web dashboard's cost, in one run: how long its page takes to load (the server's answer
for the HTML and the JSON a page polls, and a full load in headless Chromium when it is
installed), and the agent's CPU during a wrk run with the dashboard off, then with it on and a
page open, polling its JSON every 2 s (done from a thread, as the page's script does), with
the same wrk load. Prints JSON. Loopback only; each wrk run is bounded (--seconds, default 60)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.common import BenchApp, machine, parse_wrk, wrk

PAGE = "/app/hello/production"
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def agent_cpu(home: Path) -> Callable[[], float]:
    """A clock of the agent's CPU seconds (user + system), from /proc."""
    pid = int((home / "agent.pid").read_text())
    ticks = os.sysconf("SC_CLK_TCK")

    def seconds() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks
    return seconds


def timed_gets(url: str, n: int = 20) -> dict[str, float]:
    took = []
    with httpx.Client(timeout=10) as client:
        for _ in range(n):
            t0 = time.perf_counter()
            client.get(url).raise_for_status()
            took.append((time.perf_counter() - t0) * 1000)
    took.sort()
    return {"median_ms": round(statistics.median(took), 2),
            "p95_ms": round(took[int(len(took) * 0.95) - 1], 2)}


@contextmanager
def browser() -> Iterator[Any]:
    """A headless Chromium (selenium), or None when either is missing."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        yield None
        return
    if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
        yield None
        return
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def browser_load(driver: Any, url: str, n: int = 5) -> dict[str, float]:
    """Navigation timing of full page loads (HTML, CSS, JS, the inline SVG drawn)."""
    took = []
    for _ in range(n):
        driver.get(url)
        took.append(float(driver.execute_script(
            "var e = performance.getEntriesByType('navigation')[0];"
            "return e.loadEventEnd - e.startTime;")))
    return {"median_ms": round(statistics.median(took), 1), "max_ms": round(max(took), 1)}


@contextmanager
def poller(url: str) -> Iterator[None]:
    """What an open page does without a browser: the JSON every 2 s."""
    stop = threading.Event()

    def run() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.wait(2.0):
                client.get(url)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def loaded(app: BenchApp, home: Path, seconds: int, *,
           page: str | None = None) -> dict[str, Any]:
    """A wrk run through the router; the agent's CPU over it (percent of one core) and, with
    `page`, how long the page and its JSON take to answer midway through it."""
    cpu = agent_cpu(home)
    under_load: dict[str, Any] = {}

    def measure() -> None:
        time.sleep(min(5, seconds / 3))
        under_load["html"] = timed_gets(page or "")
        under_load["json"] = timed_gets((page or "").replace(PAGE, "/api" + PAGE))
    probe = threading.Thread(target=measure, daemon=True)
    c0, t0 = cpu(), time.monotonic()
    load = wrk(app.url, seconds, connections=16)
    if page:
        probe.start()
    out = parse_wrk(load.communicate()[0])
    used, wall = cpu() - c0, time.monotonic() - t0
    if page:
        probe.join(timeout=60)
    return {"agent_cpu_percent": round(100 * used / wall, 1), "wrk": out} | (
        {"page_under_load": under_load} if page else {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=60, help="each wrk run")
    args = parser.parse_args()
    app = BenchApp(18190)
    home = Path(app.env["HEADWAY_HOME"])
    base = "http://127.0.0.1:18191"
    try:
        app.headway("deploy")
        off = loaded(app, home, args.seconds)
        app.set("router_metrics_port = 18192\n", "router_metrics_port = 18192\ndashboard = true\n")
        app.headway("deploy")
        deadline = time.monotonic() + 15
        while httpx.get(base + PAGE, timeout=5).status_code != 200:  # the agent follows
            if time.monotonic() > deadline:
                raise SystemExit("the dashboard did not come up")
            time.sleep(0.5)
        result: dict[str, Any] = {"benchmark": "dashboard", "wrk_seconds": args.seconds,
                                  "page_idle": {"html": timed_gets(base + PAGE),
                                                "json": timed_gets(base + "/api" + PAGE)}}
        with browser() as driver:  # a full load in a real browser, when there is one
            if driver is not None:
                result["page_idle"]["chromium_full_load"] = browser_load(driver, base + PAGE)
        # an open page fetches the JSON every 2 s (its CSS and JS once): the same from a
        # thread, so that the browser's own CPU does not take the machine from wrk and the app
        with poller(base + "/api" + PAGE):
            on = loaded(app, home, args.seconds, page=base + PAGE)
        result |= {"dashboard_off": off, "dashboard_open": on,
                   "agent_cpu_added_percent": round(on["agent_cpu_percent"]
                                                    - off["agent_cpu_percent"], 1),
                   "rps_ratio_open_vs_off": round(on["wrk"]["rps"] / off["wrk"]["rps"], 3)
                   if off["wrk"]["rps"] else None,
                   "machine": machine()}
        print(json.dumps(result, indent=2))
    finally:
        app.close()


if __name__ == "__main__":
    main()
