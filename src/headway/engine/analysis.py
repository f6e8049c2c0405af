"""Watching a release on live traffic for the canary and blue-green analysis steps: feeds the
judge the request samples of both releases over the same window, honours `headway promote` and
`headway abort`, and raises DeployFailed with the figures on a breach. Never prints."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from headway.errors import DeployFailed
from headway.observer.judge import Limits, Verdict, judge
from headway.observer.requests import Counts, by_release
from headway.spec.models import AnalysisSpec
from headway.store import Store


def signal_key(app: str, env: str) -> str:
    return f"signal:{app}:{env}"


@dataclass(frozen=True)
class Watch:
    app: str
    env: str
    canary: int  # release numbers
    stable: int
    label: str  # e.g. "canary at 10%"
    since: float  # canary samples from here
    stable_window: tuple[float, float] | None = None  # default: the same window as the canary
    pause: float = 10.0
    max_wait: float = 300.0
    manual: bool = False


def watch(store: Store, w: Watch, analysis: AnalysisSpec, *,
          progress: Callable[[str], None]) -> Verdict:
    limits = Limits(**analysis.model_dump())
    reported = 0.0
    start, end = w.stable_window or (w.since, float("inf"))
    while True:
        rows = store.samples(w.app, w.env, since=int(min(start, w.since)))
        canary = by_release([r for r in rows if r["second"] >= int(w.since)]).get(w.canary,
                                                                                 Counts())
        stable = by_release([r for r in rows if int(start) <= r["second"] < end]).get(
            w.stable, Counts())
        verdict = judge(canary, stable, limits)
        signal = store.get(signal_key(w.app, w.env))
        if signal:
            store.put(signal_key(w.app, w.env), None)
        if signal == "abort":
            raise DeployFailed(f"{w.label}: aborted by `headway abort` ({_show(verdict)})")
        if verdict.decision == "fail":
            raise DeployFailed(f"{w.label} failed: {verdict.reason} ({_show(verdict)})",
                               hint="canary traffic went back to the stable release at once")
        now = time.time()
        if signal == "promote":
            return verdict
        if not w.manual and verdict.decision == "pass" and now >= w.since + w.pause:
            return verdict
        if not w.manual and verdict.decision == "wait" and now >= w.since + w.max_wait:
            progress(f"{w.label}: too little traffic to judge ({verdict.reason}); moving on, "
                     "as health checks pass")
            return verdict
        if now - reported >= 2:
            reported = now
            wait = "; paused: `headway promote` or `headway abort`" if w.manual else ""
            progress(f"{w.label}: {verdict.decision} — {_show(verdict)}{wait}")
        time.sleep(0.25)


def _show(verdict: Verdict) -> str:
    return json.dumps({k: v for k, v in verdict.figures.items() if v is not None})
