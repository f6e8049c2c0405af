"""The Prometheus endpoint the agent serves: request counts and latency per release from the
request log, and deploy, rollback, release, traffic and restart figures from the store.
Collected at scrape time; nothing here writes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from headway.observer.requests import BUCKETS, RequestLog
from headway.router.base import FULL
from headway.store import Store

DEPLOY_BUCKETS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class HeadwayCollector(Collector):
    """Scrapes run on the HTTP server's thread: each opens its own store connection."""

    def __init__(self, home: Path, log: RequestLog) -> None:
        self.home, self.log = home, log

    def collect(self) -> Iterator[Metric]:
        store = Store(self.home)
        try:
            yield from self._requests()
            yield from self._deploys(store)
            yield from self._releases(store)
        finally:
            store.db.close()

    def _requests(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("headway_requests", "Requests through the router",
                                       labels=["app", "env", "release", "code"])
        duration = HistogramMetricFamily("headway_request_duration_seconds",
                                         "Request time through the router (HAProxy Ta)",
                                         labels=["app", "env", "release"])
        for (app, env, release), counts in sorted(self.log.snapshot().items(), key=str):
            rel = str(release or "none")
            for code, n in counts.codes.items():
                requests.add_metric([app, env, rel, code], n)
            running, buckets = 0, []
            for bound, n in zip([*map(str, BUCKETS), "+Inf"], counts.hist, strict=True):
                running += n
                buckets.append((bound, running))
            duration.add_metric([app, env, rel], buckets, counts.seconds_sum)
        yield requests
        yield duration

    def _deploys(self, store: Store) -> Iterator[Metric]:
        rows = store.q("SELECT app, env, kind, strategy, status, started, finished "
                       "FROM deploys WHERE status != 'running' ORDER BY id")
        deploys: Counter[tuple[str, ...]] = Counter()
        rollbacks: Counter[tuple[str, ...]] = Counter()
        times: dict[tuple[str, str], list[float]] = {}
        last_failed: dict[tuple[str, str], bool] = {}
        for r in rows:
            last_failed[(r["app"], r["env"])] = r["status"] == "failed"
            if r["kind"] == "rollback":
                rollbacks[(r["app"], r["env"])] += 1
                continue
            deploys[(r["app"], r["env"], r["strategy"], r["status"])] += 1
            if r["status"] == "succeeded" and r["finished"]:
                times.setdefault((r["app"], r["env"]), []).append(r["finished"] - r["started"])
        total = CounterMetricFamily("headway_deploys", "Deploys by result",
                                    labels=["app", "env", "strategy", "result"])
        for labels, n in deploys.items():
            total.add_metric(list(labels), n)
        back = CounterMetricFamily("headway_rollbacks", "Rollbacks", labels=["app", "env"])
        for labels, n in rollbacks.items():
            back.add_metric(list(labels), n)
        took = HistogramMetricFamily("headway_deploy_duration_seconds",
                                     "Time of successful deploys", labels=["app", "env"])
        for (app, env), values in times.items():
            buckets = [(str(b), sum(v <= b for v in values)) for b in DEPLOY_BUCKETS]
            took.add_metric([app, env], [*buckets, ("+Inf", len(values))], sum(values))
        failed = GaugeMetricFamily("headway_last_deploy_failed",
                                   "1 while the latest deploy or rollback failed",
                                   labels=["app", "env"])
        for (app, env), value in last_failed.items():
            failed.add_metric([app, env], int(value))
        yield from (total, back, took, failed)

    def _releases(self, store: Store) -> Iterator[Metric]:
        info = GaugeMetricFamily("headway_release_info", "Releases that are live or warm",
                                 labels=["app", "env", "release", "status", "digest"])
        weight = GaugeMetricFamily("headway_traffic_weight", "Share of traffic per release",
                                   labels=["app", "env", "release"])
        restarts = CounterMetricFamily("headway_instance_restarts", "Instance restarts",
                                       labels=["app", "env", "process"])
        for app in store.apps():
            name, env = app["app"], app["env"]
            for rel in store.releases(name, env):
                if rel.status in {"active", "previous"}:
                    info.add_metric([name, env, str(rel.number), rel.status, rel.digest[:12]], 1)
            insts = store.instances(name, env)
            weights: Counter[int] = Counter()  # the router's weights, as routing records them
            for i in insts:
                if i.process == "web" and i.routed == "ready":
                    weights[i.release] += i.weight or FULL
            for release in {i.release for i in insts if i.process == "web"}:
                share = weights[release] / sum(weights.values()) if weights else 0.0
                weight.add_metric([name, env, str(release)], share)
            by_process: Counter[str] = Counter()
            for i in insts:
                by_process[i.process] += i.restarts
            for process, n in by_process.items():
                restarts.add_metric([name, env, process], n)
        yield from (info, weight, restarts)
