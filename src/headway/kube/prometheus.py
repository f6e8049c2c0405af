"""What the canary judge reads for runtime = "kubernetes": each release's requests, 5xx and
latency histogram over a window, from a Prometheus server's HTTP API (GET /api/v1/query, an
instant query; nothing else). The PromQL is [observe] prometheus_queries, else DEFAULTS; in
it `$pod` is a regex of one release's pod names (APP-web-rN-.*), `$namespace` the release's
namespace and `$window` the time since the step began (e.g. 12s). The answers become a
headway.observer.requests.Counts, the judge's input. Reads only; never sends anything to the
cluster, and never puts a query's answer body into an error (it is not the user's)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import httpx

from headway.errors import RuntimeFailure
from headway.observer.requests import BUCKETS, Counts

TIMEOUT = 5.0  # seconds per query
# Prometheus' own names for an app instrumented with a client library (Go's promhttp, Python's
# prometheus_client with `code` as the status label), the pods scraped with a `pod` and a
# `namespace` label (what kubernetes_sd relabeling and the Prometheus Operator's
# PodMonitor/ServiceMonitor give).
DEFAULTS: dict[str, str] = {
    "requests": 'sum(increase(http_requests_total{namespace="$namespace",pod=~"$pod"}[$window]))',
    "errors": 'sum(increase(http_requests_total{namespace="$namespace",pod=~"$pod",'
              'code=~"5.."}[$window]))',
    "latency": 'sum by (le) (increase(http_request_duration_seconds_bucket{'
               'namespace="$namespace",pod=~"$pod"}[$window]))',
}


def pod_regex(app: str, process: str, number: int) -> str:
    """Every pod of one release's Deployment: APP-PROC-rN-<replicaset hash>-<suffix>."""
    return f"{app}-{process}-r{number}-.*"


def expand(query: str, *, pod: str, namespace: str, window: float) -> str:
    return (query.replace("$pod", pod).replace("$namespace", namespace)
            .replace("$window", f"{max(1, math.ceil(window))}s"))


@dataclass
class Prometheus:
    url: str
    queries: dict[str, str]

    @classmethod
    def of(cls, url: str, queries: dict[str, str]) -> Prometheus:
        return cls(url.rstrip("/"), DEFAULTS | dict(queries))

    def counts(self, *, pod: str, namespace: str, window: float) -> Counts | None:
        """One release's figures over the last `window` seconds; None when the requests
        query matches no series (not scraped yet, or metric names that are not the app's)."""
        def ask(name: str) -> list[dict[str, object]]:
            return self.query(expand(self.queries[name], pod=pod, namespace=namespace,
                                     window=window), name)

        found = ask("requests")
        if not found:
            return None
        requests = scalar(found)
        errors = scalar(ask("errors"))
        latency = ask("latency")
        out = Counts()
        total, bad = round(requests), min(round(errors), round(requests))
        out.codes["5xx"], out.codes["2xx"] = bad, total - bad
        out.hist = histogram(latency)
        return out

    def query(self, expr: str, which: str) -> list[dict[str, object]]:
        """The vector an instant query answers; RuntimeFailure (naming prometheus_url) when
        there is no usable answer."""
        where = f"[observe] prometheus_url ({self.url})"
        try:
            answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expr},
                               timeout=TIMEOUT)
            body = answer.json()
        except httpx.HTTPError as exc:
            raise RuntimeFailure(f"{where} did not answer the {which} query: "
                                 f"{type(exc).__name__}", hint="is Prometheus reachable from "
                                 "this machine (kubectl port-forward svc/prometheus 9090)?") \
                from None
        except ValueError:
            raise RuntimeFailure(f"{where}: the answer to the {which} query is not JSON "
                                 f"(HTTP {answer.status_code})",
                                 hint="is that a Prometheus server?") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            error = str((body or {}).get("error") if isinstance(body, dict) else "")[:200]
            raise RuntimeFailure(f"{where} refused the {which} query "
                                 f"(observe.prometheus_queries.{which}): {error or 'no data'}",
                                 hint=f"the query sent: {expr}")
        data = body.get("data") or {}
        if data.get("resultType") not in ("vector", "scalar"):
            raise RuntimeFailure(f"observe.prometheus_queries.{which}: answers a "
                                 f"{data.get('resultType')}, not an instant vector",
                                 hint=f"the query sent: {expr}")
        result = data.get("result") or []
        if data.get("resultType") == "scalar":
            return [{"metric": {}, "value": result}]
        return list(result)


def scalar(vector: list[dict[str, object]]) -> float:
    """The sum of a vector's values (an empty vector: no requests seen)."""
    total = 0.0
    for sample in vector:
        value = float(sample["value"][1])  # type: ignore[index]
        total += value if math.isfinite(value) else 0.0
    return total


def histogram(vector: list[dict[str, object]]) -> list[int]:
    """Prometheus' cumulative `le` buckets as the judge's per-bucket counts (BUCKETS, then
    +Inf), linearly interpolated within a bucket as histogram_quantile does."""
    points: list[tuple[float, float]] = []
    for sample in vector:
        metric = sample.get("metric")
        le = str(metric.get("le", "")) if isinstance(metric, dict) else ""
        try:
            points.append((float(le), float(sample["value"][1])))  # type: ignore[index]
        except ValueError:
            continue
    points.sort()
    if not points:
        return [0] * (len(BUCKETS) + 1)

    def below(x: float) -> float:
        lo_edge, lo_count = 0.0, 0.0
        for edge, count in points:
            if x <= edge:
                if math.isinf(edge):
                    return lo_count
                return lo_count + (count - lo_count) * (x - lo_edge) / (edge - lo_edge or 1)
            lo_edge, lo_count = edge, count
        return lo_count

    total = points[-1][1]
    cumulative = [*(below(b) for b in BUCKETS), total]
    out, previous = [], 0
    for value in cumulative:
        rounded = max(previous, round(value))
        out.append(rounded - previous)
        previous = rounded
    return out
