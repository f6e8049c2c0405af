"""Constant load through the router (wrk, for the whole sequence) while deploying (blue-green and
rolling alternating), every 5th deploy followed by a failing one (refused) and every 4th by a
rollback. Prints JSON: wrk's requests and failures over the whole run, switch times, each
deploy's and rollback's wall time (and the time Headway reports, without the CLI's start-up),
and the router's own view (HAProxy's longest request/connect/response times, retries) step by
step, to tell where a slow answer came from. Defaults: 20 deploys on the process runtime, 10 on
containers; `--rounds N` sets it, `--min-requests N` goes on deploying until the router has
answered N requests. `--runtime docker,podman` runs the engines back to back (same load, same
sequence) and prints one JSON. Docker: the daemon DOCKER_HOST names, or, without DOCKER_HOST, a
daemon of the bench's own (tests/dockerd.py: own socket, bridge, data root; needs root)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import time
from collections.abc import Iterator

from bench.common import BenchApp, LongWrk, machine, router_stats

PORT = 18181


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runtime", default="process",
                        help="process, podman, docker, or several comma-separated (back to back)")
    parser.add_argument("--rounds", type=int, default=0)
    parser.add_argument("--min-requests", type=int, default=0,
                        help="keep deploying until the router has answered this many requests")
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    runtimes = args.runtime.split(",")
    if not set(runtimes) <= {"process", "podman", "docker"}:
        parser.error(f"--runtime {args.runtime}: choose from process, podman, docker")
    results = {}
    with _daemon("docker" in runtimes) as daemon:
        for runtime in runtimes:
            results[runtime] = run(runtime, args.rounds or (20 if runtime == "process" else 10),
                                   args.min_requests, args.connections)
            results[runtime]["docker_daemon"] = daemon if runtime == "docker" else None
    if len(runtimes) == 1:
        print(json.dumps(results[runtimes[0]], indent=2))
    else:
        print(json.dumps({"benchmark": "zero_downtime", "order": runtimes, **results}, indent=2))


@contextlib.contextmanager
def _daemon(wanted: bool) -> Iterator[str | None]:
    if not wanted:
        yield None
    elif os.environ.get("DOCKER_HOST"):
        yield "DOCKER_HOST"
    else:
        from tests.dockerd import own_dockerd

        with own_dockerd():
            yield "own (tests/dockerd.py)"


def run(runtime: str, rounds: int, min_requests: int, connections: int) -> dict[str, object]:
    app = BenchApp(PORT, runtime=runtime)
    stats_port = PORT + 2
    try:
        started = time.monotonic()
        app.headway("deploy")
        first = time.monotonic() - started
        before = machine()
        load = LongWrk(app.url, connections=connections)
        seq = Sequence(app, stats_port, load.started)
        n = 0
        while n < rounds or seq.answered() < min_requests:
            n += 1
            seq.deploy(n, "rolling" if n % 2 else "blue-green")
            if n % 5 == 0:
                seq.refused(n)
            if n % 4 == 0:
                seq.rollback(n)
        app.headway("status")
        result, ran_s = load.stop()
        seq.step("wrk stopped")
        return {
            "benchmark": "zero_downtime", "runtime": runtime, "deploys": n,
            "failed_deploys_refused": seq.refused_ok, "refused_deploys": len(seq.refuse_s),
            "rollbacks": len(seq.rollback_s), "wrk_connections": connections,
            "wrk_seconds": ran_s, **result,
            "failed_requests": result["non_2xx"] + result["socket_errors"] + result["timeouts"],
            "switch_ms_median": statistics.median(seq.switches) if seq.switches else None,
            "switch_ms_max": max(seq.switches) if seq.switches else None,
            "first_deploy_s": round(first, 1), "deploy_s_median": _median(seq.deploy_s),
            "deploy_s_max": round(max(seq.deploy_s), 1),
            "refused_deploy_s_median": _median(seq.refuse_s),
            "deploy_reported_s_median": _median(seq.live_s),
            "rollback_s_median": _median(seq.rollback_s),
            "rollback_reported_s_median": _median(seq.rollback_live_s),
            "router": router_stats(stats_port, "hello"), "router_timeline": seq.timeline,
            "machine_before": before, "machine": machine(),
        }
    finally:
        app.close()


class Sequence:
    """The deploys, refused deploys and rollbacks under load, each timed, with the router's
    counters after each step where they changed (to place a slow answer in the sequence)."""

    def __init__(self, app: BenchApp, stats_port: int, t0: float) -> None:
        self.app, self.stats_port, self.t0 = app, stats_port, t0
        self.switches: list[int] = []
        self.deploy_s: list[float] = []
        self.refuse_s: list[float] = []
        self.rollback_s: list[float] = []
        self.live_s: list[float] = []
        self.rollback_live_s: list[float] = []
        self.refused_ok = 0
        self.timeline: list[dict[str, object]] = []
        self._last: dict[str, float] = {}

    def answered(self) -> float:
        return router_stats(self.stats_port, "hello").get("http_responses_total", 0.0)

    def step(self, what: str, seconds: float | None = None) -> None:
        stats = router_stats(self.stats_port, "hello")
        changed = {k: v for k, v in stats.items() if k != "http_responses_total"
                   and v != self._last.get(k, 0.0)}
        self.timeline.append({"at_s": round(time.monotonic() - self.t0, 1), "step": what,
                              **({"took_s": round(seconds, 2)} if seconds is not None else {}),
                              "answered": stats.get("http_responses_total"), **changed})
        self._last = stats

    def deploy(self, n: int, strategy: str) -> None:
        app = self.app
        app.set('strategy = "blue-green"', f'strategy = "{strategy}"')
        app.set('strategy = "rolling"', f'strategy = "{strategy}"')
        app.write("VERSION", f"v{n + 1}\n")
        started = time.monotonic()
        out = app.headway("deploy").stdout
        self.deploy_s.append(time.monotonic() - started)
        if m := re.search(r"is live in ([\d.]+)s", out):
            self.live_s.append(float(m.group(1)))
        if m := re.search(r"switched in (\d+) ms", out):
            self.switches.append(int(m.group(1)))
        self.step(f"deploy {n} ({strategy})", self.deploy_s[-1])

    def refused(self, n: int) -> None:
        self.app.write("BROKEN", "crash")
        self.app.write("VERSION", f"broken-{n}\n")
        started = time.monotonic()
        self.refused_ok += self.app.headway("deploy", check=False).returncode == 4
        self.refuse_s.append(time.monotonic() - started)
        self.app.write("BROKEN", None)
        self.step(f"refused deploy after {n}", self.refuse_s[-1])

    def rollback(self, n: int) -> None:
        started = time.monotonic()
        back = self.app.headway("rollback").stdout
        self.rollback_s.append(time.monotonic() - started)
        if m := re.search(r"live again in ([\d.]+)s", back):
            self.rollback_live_s.append(float(m.group(1)))
        self.step(f"rollback after {n}", self.rollback_s[-1])


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


if __name__ == "__main__":
    main()
