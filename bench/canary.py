"""Canary judge under steady load through the router. Prints JSON:
(a) a canary answering 500 to 5% of requests: time from its first bad answer to its last answer
    (its weight at 0), and the share of all requests that failed;
(b) a canary 200 ms slower: time from its first answer to its last;
(c) a good canary at 20 req/s in all: the real deploy's outcome, then the judge on 100
    bootstrap windows of the recorded per-second samples (how many fail: target 0)."""

from __future__ import annotations

import json
import random

from bench.common import BenchApp, TimedLoad, machine
from headway.observer.judge import Limits, judge
from headway.observer.requests import Counts, by_release
from headway.store import Store

CANARY = '\n[deploy.canary]\nsteps = [10, 50, 100]\npause = "{pause}"\nmax_wait = "{wait}"\n'


def canary_app(port: int, *, pause: str, wait: str) -> BenchApp:
    """The example with canary deploys, v1 live and v2 written, ready to deploy."""
    app = BenchApp(port)
    app.set('strategy = "blue-green"', 'strategy = "canary"')
    app.set("[router]", CANARY.format(pause=pause, wait=wait) + "\n[router]")
    app.headway("deploy")
    app.write("VERSION", "v2\n")
    return app


def bad_canary(fault: str, port: int) -> dict[str, object]:
    app = canary_app(port, pause="60s", wait="60s")
    try:
        app.write("FAULTS", fault)
        with TimedLoad(app.url) as load:
            result = app.headway("deploy", check=False)
        canary = [(t, code) for t, version, code in load.answers if version == "v2"]
        first_bad = next((t for t, code in canary if code != 200), canary[0][0] if canary else 0)
        return {"fault": fault, "deploy_exit": result.returncode,
                "requests": len(load.answers),
                "failed_share": round(sum(c != 200 for _, _, c in load.answers)
                                      / max(len(load.answers), 1), 5),
                "canary_requests": len(canary),
                "seconds_first_bad_to_weight_0": round(canary[-1][0] - first_bad, 2)
                if canary else None,
                "seconds_first_canary_answer_to_weight_0": round(canary[-1][0] - canary[0][0], 2)
                if canary else None,
                "reason": next((line for line in result.stderr.splitlines()
                                if "failed:" in line and "canary" in line), "")[:200]}
    finally:
        app.close()


def low_traffic(port: int) -> dict[str, object]:
    app = canary_app(port, pause="15s", wait="20s")
    try:
        with TimedLoad(app.url, threads=2, rps=20):
            result = app.headway("deploy", check=False)
        store = Store(app.tmp / "home")
        rows = store.samples("hello", "production", since=0)
        seconds: dict[int, list[object]] = {}
        for row in rows:
            seconds.setdefault(row["second"], []).append(row)
        span = sorted(s for s, rs in seconds.items() if any(r["release"] == 2 for r in rs))
        rng, decisions = random.Random(1), {"pass": 0, "wait": 0, "fail": 0}
        for _ in range(100):
            window = [r for s in rng.choices(span, k=len(span)) for r in seconds[s]]
            merged = by_release(window)
            verdict = judge(merged.get(2, Counts()), merged.get(1, Counts()), Limits())
            decisions[verdict.decision] += 1
        reason = [line for line in result.stderr.splitlines() if "failed" in line][-1:]
        return {"deploy_exit": result.returncode, "reason": reason[0][:300] if reason else "",
                "seconds_judged": len(span),
                "judge_runs": 100, "decisions": decisions}
    finally:
        app.close()


def main() -> None:
    print(json.dumps({
        "benchmark": "canary",
        "a_errors_5_percent": bad_canary("errors=0.05", 18191),
        "b_200ms_slower": bad_canary("delay=0.2", 18194),
        "c_good_canary_20_rps": low_traffic(18197),
        "machine": machine()}, indent=2))


if __name__ == "__main__":
    main()
