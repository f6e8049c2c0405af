"""The canary judge: compares the canary with the stable release over the same window and
says pass, fail or wait, with the figures that decided. Pure functions on counts.

Errors (5xx share) and latency are each checked two ways, one-sided at `confidence`:
- absolute: a binomial test that the canary's error rate exceeds max_error_rate, and that more
  than 1% of its requests are slower than max_p99 (the same as "p99 > max_p99");
- relative to stable: a two-proportion z-test on error rates (beyond max_error_increase), and
  a Mann-Whitney U test on the binned latencies, counted only when the canary's p99 is also
  max_latency_ratio times stable's and max_p99_increase above it: with few requests p99 is
  the slowest one, and a single 20 ms outlier beside a 3 ms stable must not fail a release.
It fails as soon as a breach is significant, passes once min_requests are seen with no breach,
and otherwise waits: too little traffic is never a failure."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from headway.observer.requests import BUCKETS, Counts, quantile


@dataclass(frozen=True)
class Limits:
    max_error_rate: float = 0.01
    max_p99: float = 0.5
    max_error_increase: float = 0.01
    max_latency_ratio: float = 1.5
    max_p99_increase: float = 0.1
    confidence: float = 0.99
    min_requests: int = 50


@dataclass(frozen=True)
class Verdict:
    decision: str  # pass | fail | wait
    reason: str
    figures: dict[str, float | int | None] = field(default_factory=dict)


def judge(canary: Counts, stable: Counts | None, limits: Limits) -> Verdict:
    alpha = 1 - limits.confidence
    n, errors = canary.total, canary.codes["5xx"]
    figures = _figures(canary, stable)
    if n == 0:
        return Verdict("wait", "no requests to the canary yet", figures)
    if binomial_sf(errors, n, limits.max_error_rate) < alpha:
        return Verdict("fail", f"error rate {errors / n:.2%} > {limits.max_error_rate:.2%} "
                               f"({errors} of {n} requests)", figures)
    slow = sum(c for b, c in zip((*BUCKETS, math.inf), canary.hist, strict=True)
               if _lower(b) >= limits.max_p99)
    if binomial_sf(slow, n, 0.01) < alpha:
        return Verdict("fail", f"p99 > {limits.max_p99 * 1000:.0f} ms ({slow} of {n} requests "
                               "slower)", figures)
    if stable is not None and stable.total:
        z = two_proportion_z(errors, n, stable.codes["5xx"], stable.total,
                             delta=limits.max_error_increase)
        if z > _z(alpha):
            return Verdict("fail", f"error rate {errors / n:.2%} vs stable "
                                   f"{stable.codes['5xx'] / stable.total:.2%}", figures)
        p99_c, p99_s = quantile(canary.hist, 0.99), quantile(stable.hist, 0.99)
        slower = mann_whitney_z(canary.hist, stable.hist)
        if (slower > _z(alpha) and p99_c is not None and p99_s is not None
                and p99_c > limits.max_latency_ratio * p99_s
                and p99_c - p99_s > limits.max_p99_increase):
            return Verdict("fail", f"slower than stable: p99 {p99_c * 1000:.0f} ms vs "
                                   f"{p99_s * 1000:.0f} ms (Mann-Whitney z={slower:.1f})", figures)
    enough = n >= limits.min_requests and (stable is None or stable.total >= limits.min_requests)
    if not enough:
        return Verdict("wait", f"{n} of {limits.min_requests} requests needed", figures)
    return Verdict("pass", f"{n} requests, no breach", figures)


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): exact for small n, normal approximation beyond."""
    if k <= 0:
        return 1.0
    if p <= 0:
        return 0.0
    if n <= 2000:
        logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
                + i * math.log(p) + (n - i) * math.log1p(-p) for i in range(k, n + 1)]
        top = max(logs)
        return min(1.0, math.exp(top) * sum(math.exp(x - top) for x in logs))
    mean, sd = n * p, math.sqrt(n * p * (1 - p))
    return 0.5 * math.erfc((k - 0.5 - mean) / (sd * math.sqrt(2)))


def two_proportion_z(k1: int, n1: int, k2: int, n2: int, *, delta: float) -> float:
    """z for H0: p1 - p2 <= delta (large z: p1 is worse than p2 by more than delta)."""
    p1, p2 = k1 / n1, k2 / n2
    se = math.sqrt(max(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2, 1e-12))
    return (p1 - p2 - delta) / se


def mann_whitney_z(a: list[int], b: list[int]) -> float:
    """z of the Mann-Whitney U test that samples `a` are larger than `b`, from histograms with
    the same buckets (ties within a bucket get mid-ranks; tie-corrected variance)."""
    n1, n2 = sum(a), sum(b)
    if not n1 or not n2:
        return 0.0
    rank, u, ties = 0, 0.0, 0.0
    for ca, cb in zip(a, b, strict=True):
        t = ca + cb
        mid = rank + (t + 1) / 2
        u += ca * mid
        ties += t**3 - t
        rank += t
    u -= n1 * (n1 + 1) / 2
    n = n1 + n2
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))) if n > 1 else 0
    return (u - n1 * n2 / 2) / math.sqrt(var) if var > 0 else 0.0


def _z(alpha: float) -> float:
    """One-sided critical value: the z with P(Z > z) = alpha (bisection on erfc)."""
    lo, hi = 0.0, 10.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if 0.5 * math.erfc(mid / math.sqrt(2)) > alpha else (lo, mid)
    return lo


def _lower(bound: float) -> float:
    """The lower edge of the bucket whose upper edge is `bound`."""
    edges = (0.0, *BUCKETS)
    return edges[BUCKETS.index(bound)] if bound in BUCKETS else BUCKETS[-1]


def _figures(canary: Counts, stable: Counts | None) -> dict[str, float | int | None]:
    def describe(c: Counts, who: str) -> dict[str, float | int | None]:
        p99 = quantile(c.hist, 0.99)
        return {f"{who}_requests": c.total,
                f"{who}_error_rate": round(c.codes["5xx"] / c.total, 4) if c.total else None,
                f"{who}_p99_ms": None if p99 is None else round(p99 * 1000, 1)}
    return describe(canary, "canary") | (describe(stable, "stable") if stable else {})
