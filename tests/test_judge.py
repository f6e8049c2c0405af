"""The canary judge on table-driven samples, and its statistics against known values."""

import math
import random

import pytest

from headway.observer.judge import Limits, binomial_sf, judge, mann_whitney_z
from headway.observer.requests import Counts


def counts(n: int, *, errors: int = 0, latency: float = 0.004, slow: int = 0,
           slow_latency: float = 0.6, seed: int = 1) -> Counts:
    rng = random.Random(seed)
    c = Counts()
    for i in range(n):
        seconds = slow_latency if i < slow else latency * rng.uniform(0.5, 1.5)
        c.add("5xx" if i >= n - errors else "2xx", seconds)
    return c


@pytest.mark.parametrize(("canary", "stable", "decision", "reason"), [
    # clear good: enough requests, no errors, same latency
    (counts(200), counts(2000), "pass", "200 requests, no breach"),
    # clear bad: 5% errors
    (counts(200, errors=10), counts(2000), "fail", "error rate 5.00% > 1.00%"),
    # too little data: 3 good requests is not a verdict either way
    (counts(3), counts(30), "wait", "3 of 50 requests needed"),
    (counts(0), counts(30), "wait", "no requests to the canary yet"),
    # too little data, but already damning: 4 failures in 6 requests
    (counts(6, errors=4), counts(30), "fail", "error rate 66.67% > 1.00%"),
    # noisy but fine: 1 error in 300 (0.33%) is within the 1% limit
    (counts(300, errors=1), counts(3000, errors=3), "pass", "300 requests, no breach"),
    # slow: 5% of requests beyond max_p99
    (counts(400, slow=20), counts(4000), "fail", "p99 > 500 ms"),
    # slower than stable only: p99 ~200 ms vs ~6 ms, under the absolute 500 ms limit
    (counts(300, latency=0.2), counts(3000), "fail", "slower than stable"),
    # low traffic, one 25 ms outlier among 20: p99 ratio 5x, but only +20 ms (recorded case)
    (counts(20, slow=1, slow_latency=0.025, latency=0.002),
     counts(200, latency=0.002, seed=3), "wait", "20 of 50"),
    # a little slower than stable (5 ms vs 4 ms): significant, but under max_latency_ratio
    (counts(3000, latency=0.005), counts(3000, latency=0.0045, seed=2), "pass", "no breach"),
    # worse than stable beyond max_error_increase, under the absolute limit only for stable
    (counts(2000, errors=36), counts(20000, errors=0), "fail", "error rate 1.80%"),
])
def test_judge(canary: Counts, stable: Counts, decision: str, reason: str) -> None:
    verdict = judge(canary, stable, Limits())
    assert verdict.decision == decision, verdict
    assert reason in verdict.reason
    assert verdict.figures["canary_requests"] == canary.total


def test_good_canary_at_low_traffic_is_never_failed() -> None:
    """100 recorded runs at 20 req/s for 10 s (200 requests, 10% to the canary, 0.1% errors
    in both): the judge must never fail one."""
    rng = random.Random(7)
    for run in range(100):
        canary, stable = Counts(), Counts()
        for _ in range(200):
            side = canary if rng.random() < 0.1 else stable
            side.add("5xx" if rng.random() < 0.001 else "2xx", rng.lognormvariate(-5, 0.4))
        assert judge(canary, stable, Limits(min_requests=10)).decision != "fail", run


def test_binomial_tail_matches_known_values() -> None:
    assert binomial_sf(0, 10, 0.5) == 1.0
    assert math.isclose(binomial_sf(5, 100, 0.01), 0.00340, rel_tol=0.01)
    assert math.isclose(binomial_sf(60, 100, 0.5), 0.02844, rel_tol=0.01)
    assert binomial_sf(5000, 100000, 0.01) < 1e-9  # normal approximation beyond n=2000


def test_mann_whitney_sign_and_symmetry() -> None:
    fast, slow = counts(500).hist, counts(500, latency=0.05).hist
    assert mann_whitney_z(slow, fast) > 10
    assert mann_whitney_z(fast, slow) < -10
    assert abs(mann_whitney_z(fast, fast)) < 1e-9
