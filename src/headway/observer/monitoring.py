"""`headway generate monitoring`: a Prometheus scrape config, alert rules and a Grafana
dashboard for what the agent and HAProxy export. Pure: returns file contents; the CLI writes
them. Every query is listed once in QUERIES/ALERTS so tests can run each against Prometheus."""

from __future__ import annotations

import json
from typing import Any

RATE = "sum by (app, env, release) (rate(headway_requests_total[1m]))"
ERRORS = "sum by (app, env, release) (rate(headway_requests_total{code=\"5xx\"}[1m]))"
P99 = ("histogram_quantile(0.99, sum by (app, env, release, le) "
       "(rate(headway_request_duration_seconds_bucket[1m])))")

# Dashboard panels: title, expression, unit.
QUERIES = [
    ("Requests per second, by release", RATE, "reqps"),
    ("Error rate (5xx share), by release", f"{ERRORS} / {RATE}", "percentunit"),
    ("Latency p99, by release", P99, "s"),
    ("Traffic share, by release", "headway_traffic_weight", "percentunit"),
    ("Live and warm releases", "headway_release_info", "none"),
    ("Deploys, by result", "sum by (app, env, result) (headway_deploys_total)", "none"),
    ("Instance restarts", "sum by (app, env, process) (headway_instance_restarts_total)", "none"),
]

# Dashboard annotations: name, expression (marks where it is > 0), colour.
ANNOTATIONS = [("Deploys", "changes(headway_deploys_total[1m])", "blue"),
               ("Rollbacks", "changes(headway_rollbacks_total[1m])", "red")]

# Alerts: name, expression (a query), threshold comparison, for, summary.
ALERTS = [
    ("HeadwayHighErrorRate", f"{ERRORS} / {RATE}", "> 0.05", "2m",
     "{{ $labels.app }} release {{ $labels.release }}: over 5% of requests fail"),
    ("HeadwayHighLatency", P99, "> 0.5", "5m",
     "{{ $labels.app }} release {{ $labels.release }}: p99 over 500 ms"),
    ("HeadwayDeployFailed", "headway_last_deploy_failed", "== 1", "0s",
     "{{ $labels.app }} ({{ $labels.env }}): the last deploy failed; traffic stayed put"),
    ("HeadwayInstanceCrashLooping",
     "sum by (app, env, process) (increase(headway_instance_restarts_total[5m]))", "> 3", "0s",
     "{{ $labels.app }} {{ $labels.process }}: instances keep restarting"),
    ("HeadwayRouterDown", "up{job=\"headway-router\"}", "== 0", "1m",
     "HAProxy does not answer its metrics endpoint"),
    ("HeadwayAgentDown", "up{job=\"headway\"}", "== 0", "1m",
     "the Headway agent does not answer its metrics endpoint"),
]


def prometheus_config(*, headway: str, router: str | None, interval: str = "15s") -> str:
    jobs = [{"job_name": "headway", "static_configs": [{"targets": [headway]}]}]
    if router:
        jobs.append({"job_name": "headway-router", "static_configs": [{"targets": [router]}]})
    return to_yaml({"global": {"scrape_interval": interval, "evaluation_interval": interval},
                    "rule_files": ["headway-alerts.yml"], "scrape_configs": jobs})


def alert_rules() -> str:
    rules = [{"alert": name, "expr": f"{expr} {compare}", "for": wait,
              "labels": {"severity": "page" if name != "HeadwayHighLatency" else "ticket"},
              "annotations": {"summary": summary}}
             for name, expr, compare, wait, summary in ALERTS]
    return to_yaml({"groups": [{"name": "headway", "rules": rules}]})


def grafana_dashboard() -> str:
    panels = [{"id": n + 1, "type": "timeseries", "title": title,
               "gridPos": {"h": 8, "w": 12, "x": 12 * (n % 2), "y": 8 * (n // 2)},
               "datasource": {"type": "prometheus", "uid": "${datasource}"},
               "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
               "targets": [{"refId": "A", "expr": expr,
                            "legendFormat": "{{app}} {{env}} r{{release}}"}]}
              for n, (title, expr, unit) in enumerate(QUERIES)]
    annotations = [{"name": name, "enable": True, "iconColor": color,
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "expr": f"{expr} > 0", "titleFormat": name, "step": "15s"}
                   for name, expr, color in ANNOTATIONS]
    dashboard: dict[str, Any] = {
        "title": "Headway", "uid": "headway", "schemaVersion": 39, "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"}, "panels": panels,
        "annotations": {"list": annotations},
        "templating": {"list": [{"name": "datasource", "type": "datasource",
                                 "query": "prometheus"}]}}
    return json.dumps(dashboard, indent=2) + "\n"


def to_yaml(value: Any, indent: int = 0) -> str:
    """Block-style YAML with every scalar JSON-quoted (valid YAML, no dependency)."""
    pad = "  " * indent
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}{key}:\n{to_yaml(item, indent + 1)}")
            else:
                lines.append(f"{pad}{key}: {json.dumps(item)}")
        return "\n".join(lines) + ("\n" if indent == 0 else "")
    lines = []
    for item in value:
        if isinstance(item, dict | list) and item:
            body = to_yaml(item, indent + 1)
            lines.append(f"{pad}- {body.lstrip()}")
        else:
            lines.append(f"{pad}- {json.dumps(item)}")
    return "\n".join(lines)
