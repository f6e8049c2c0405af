"""What the dashboard shows, read from the store (and the live router for health and
traffic share) as plain dicts, the same for the HTML pages and the JSON endpoints.

Read-only: never writes the store. Never returns an instance's environment, argv or a
release's recorded spec: those hold configuration and secret values."""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from typing import Any

from headway.observer.judge import Limits, judge
from headway.observer.requests import Counts, by_release, quantile, release_stats
from headway.router.base import Router, backend_name, shares
from headway.store import Release, Store

LIVE = 10  # seconds of samples behind the "now" figures, as `headway status`
HOUR = 3600
POINTS = 120  # points per chart line, at most
MIN_BIN = 2  # seconds per point, at least
MIN_SPAN = 60  # seconds a chart spans, at least
RECENT = 120  # a deploy that ended this long ago is still shown


def overview(store: Store) -> list[dict[str, Any]]:
    """One row per app and environment: its live and warm releases and what runs now."""
    rows = []
    for app in store.apps():
        name, env = app["app"], app["env"]
        releases = store.releases(name, env)
        running = [d for d in store.deploys(name, env, limit=1) if d["status"] == "running"]
        rows.append({"app": name, "env": env, "router": f"{app['router_address']}:"
                     f"{app['router_port']}" if app["router_port"] else "none (no web here)",
                     "live": _number(releases, "active"),
                     "warm": _number(releases, "previous"),
                     "instances": len(store.instances(name, env)),
                     "deploying": running[0]["release"] if running else None})
    return rows


def app_view(store: Store, router: Router | None, app: str, env: str) -> dict[str, Any] | None:
    """Everything the app page shows; None when the app is not on this host."""
    if not any((a["app"], a["env"]) == (app, env) for a in store.apps()):
        return None
    releases = store.releases(app, env)
    now = time.time()
    traffic = release_stats(store.samples(app, env, since=int(now) - LIVE), window=LIVE)
    total = sum(int(t["requests"] or 0) for t in traffic.values())
    return {
        "app": app, "env": env, "now": now,
        "live": _release(next((r for r in releases if r.status == "active"), None), now),
        "warm": [_release(r, now) for r in releases if r.status == "previous"],
        "instances": instances(store, router, app, env),
        "traffic": [{"release": rel or None, **figures,
                     "share": round(100 * int(figures["requests"] or 0) / total, 1)
                     if total else 0.0} for rel, figures in sorted(traffic.items())],
        "deploy": deploy(store, app, env),
        "releases": [_release(r, now) for r in releases[:20]],
        "events": store.events(app, env, limit=30)[::-1],
    }


def _number(releases: list[Release], status: str) -> int | None:
    return next((r.number for r in releases if r.status == status), None)


def _release(rel: Release | None, now: float) -> dict[str, Any] | None:
    if rel is None:
        return None
    return {"number": rel.number, "status": rel.status, "digest": rel.digest[:19],
            "created": rel.created, "deployed": rel.deployed, "warm_until": rel.warm_until,
            "expires_in": round(rel.warm_until - now) if rel.warm_until else None,
            "failure": rel.failure}


def instances(store: Store, router: Router | None, app: str, env: str) -> list[dict[str, Any]]:
    """Instances with the router's view: health, and the share of requests its weight gets."""
    live = {}
    try:
        if router is not None and router.running():
            live = router.servers(backend_name(app, env))
    except Exception:  # noqa: BLE001 - a busy or restarting router: shown as unknown
        live = {}
    share = shares({i: s.weight for i, s in live.items() if s.serving})
    return [{"id": i.id, "release": i.release, "process": i.process, "port": i.port or None,
             "state": i.state, "restarts": i.restarts, "started": i.started,
             "router": live[i.id].admin if i.id in live else "none",
             "health": ("up" if live[i.id].up else "down")
             if i.id in live and live[i.id].admin != "maint" else None,
             "traffic": share.get(i.id, 0.0)} for i in store.instances(app, env)]


def deploy(store: Store, app: str, env: str) -> dict[str, Any] | None:
    """The running deploy (or one that ended in the last RECENT seconds): its journal step by
    step, the judge's verdicts recorded so far and, while it judges, its figures now."""
    rows = store.deploys(app, env, limit=1)
    if not rows:
        return None
    d = rows[0]
    if d["status"] != "running" and (d["finished"] or 0) < time.time() - RECENT:
        return None
    steps: list[dict[str, Any]] = []
    for row in store.journal_of(d["id"]):
        if row["phase"] == "begin":
            steps.append({"step": row["step"], "started": row["ts"], "done": None})
        elif steps and steps[-1]["step"] == row["step"]:
            steps[-1]["done"] = row["ts"]
    events = [e for e in store.events(app, env, limit=60) if e["ts"] >= d["started"] - 1
              and e["kind"].startswith(("analysis.", "deploy.", "rollback", "dashboard."))]
    return {"id": d["id"], "release": d["release"], "previous": d["previous"],
            "kind": d["kind"], "strategy": d["strategy"], "status": d["status"],
            "started": d["started"], "finished": d["finished"], "message": d["message"],
            "steps": steps, "events": events,
            "judge": _judging(store, d, events) if d["status"] == "running" else None}


def _judging(store: Store, d: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What the judge sees now, when the deploy's last analysis started and has not ended."""
    started = [e for e in events if e["kind"] == "analysis.started"]
    if not started or started[-1] is not events[-1] or d["previous"] is None:
        return None
    since = started[-1]["ts"]
    rows = store.samples(d["app"], d["env"], since=int(since))
    merged = by_release(rows)
    verdict = judge(merged.get(d["release"], Counts()), merged.get(d["previous"], Counts()),
                    _limits(store.release(d["app"], d["env"], d["release"])))
    return {"label": started[-1]["message"].split(":")[0], "since": since,
            "decision": verdict.decision, "reason": verdict.reason,
            "figures": {k: v for k, v in verdict.figures.items() if v is not None}}


def _limits(rel: Release | None) -> Limits:
    """The release's recorded [deploy.canary.analysis] limits (the defaults if unreadable)."""
    try:
        deploy = json.loads(rel.spec)["spec"]["deploy"] if rel else {}
        return Limits(**deploy["canary"]["analysis"])
    except (ValueError, KeyError, TypeError):
        return Limits()


def chart(store: Store, app: str, env: str, *, now: float | None = None) -> dict[str, Any]:
    """Requests per second, error rate and p99 per release over the last hour (or since the
    first request, when that is later), about POINTS points: {"start", "end", "bin",
    "series": {release: [[t, rps, error_rate, p99_ms], ...]}}."""
    end = int(now or time.time()) - 1  # the agent saves a second once it is over
    rows = [r for r in store.samples(app, env, since=end - HOUR) if r["release"]]
    start = min((r["second"] for r in rows), default=end - HOUR)
    start = min(start, end - MIN_SPAN)
    step = max(MIN_BIN, -(-(end - start) // POINTS))
    bins: dict[int, dict[int, Counts]] = defaultdict(lambda: defaultdict(Counts))
    for row in rows:
        bins[row["release"]][(row["second"] - start) // step].merge(
            by_release([row])[row["release"]])
    series = {}
    for rel, points in sorted(bins.items()):
        series[rel] = [[start + n * step, round(c.total / step, 2),
                        round(c.codes["5xx"] / c.total, 4) if c.total else None,
                        _ms(quantile(c.hist, 0.99))] for n, c in sorted(points.items())
                       if start + (n + 1) * step <= end]  # a bin still filling: not yet
    return {"start": start, "end": end, "bin": step, "series": series}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None or seconds == float("inf") else round(seconds * 1000, 1)


def log_tail(store: Store, app: str, env: str, inst_id: str, *, lines: int = 50) -> list[str] | None:
    """The last lines an instance wrote (None: no such instance of this app)."""
    inst = store.instance(inst_id)
    if inst is None or (inst.app, inst.env) != (app, env):
        return None
    try:
        with open(inst.log, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]
