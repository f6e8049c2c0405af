"""The dashboard's HTML: whole pages for the first load, and the <main> part alone for the
JSON endpoints the page polls. The charts are inline SVG drawn here. Every value from the store
goes through html.escape.

Pure: data in, text out; no I/O."""

from __future__ import annotations

import time
from html import escape
from typing import Any

COLORS = ("#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2")
W, H, PAD = 600, 110, 4  # one chart's drawing box (SVG units)


def page(title: str, main: str, *, poll: str | None) -> str:
    """A whole page; `poll`: the JSON endpoint its script refreshes <main> from."""
    data = f' data-poll="{escape(poll)}"' if poll else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · Headway</title>
<link rel="stylesheet" href="/static/dash.css"></head>
<body{data}>
<header><a href="/" class="brand">Headway</a><span id="clock"></span>
<details id="tokenbox"><summary>token</summary>
<label>Dashboard token (<code>headway dashboard token</code>)
<input id="token" type="password" autocomplete="off" spellcheck="false"></label>
</details></header>
<div id="flash" role="status"></div>
<main id="main">{main}</main>
<script src="/static/dash.js"></script>
</body></html>
"""


def when(ts: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) if ts else "—"


def _v(value: Any) -> str:
    return "—" if value is None else escape(str(value))


def _table(rows: list[dict[str, Any]], cols: list[tuple[str, str]], *,
           cls: str = "") -> str:
    if not rows:
        return '<p class="muted">none</p>'
    head = "".join(f"<th>{escape(label)}</th>" for _, label in cols)
    body = "".join("<tr>" + "".join(f'<td data-label="{escape(label)}">{row.get(key, "")}</td>'
                                    for key, label in cols) + "</tr>" for row in rows)
    return f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead>' \
           f"<tbody>{body}</tbody></table></div>"


# overview ---------------------------------------------------------------------------------
def overview(apps: list[dict[str, Any]]) -> str:
    rows = [{"app": f'<a href="/app/{escape(a["app"])}/{escape(a["env"])}">'
                    f'{escape(a["app"])}</a>',
             "env": escape(a["env"]), "router": escape(a["router"]),
             "live": _v(a["live"]), "warm": _v(a["warm"]), "instances": a["instances"],
             "deploying": "" if a["deploying"] is None
             else f'<span class="badge run">release {a["deploying"]}</span>'} for a in apps]
    return "<h1>Apps</h1>" + _table(rows, [("app", "app"), ("env", "environment"),
                                           ("router", "router"), ("live", "live release"),
                                           ("warm", "warm release"),
                                           ("instances", "instances"),
                                           ("deploying", "deploy")])


# one app ----------------------------------------------------------------------------------
def app(view: dict[str, Any], chart: dict[str, Any]) -> str:
    name, env = view["app"], view["env"]
    return "".join([
        f'<h1>{escape(name)} <span class="muted">({escape(env)})</span></h1>',
        _summary(view),
        _deploy(view["deploy"]),
        '<section><h2>Traffic, last hour</h2>', svg_charts(chart), "</section>",
        '<section><h2>Now (last 10 s)</h2>', _traffic(view["traffic"]), "</section>",
        '<section><h2>Instances</h2>', _instances(view), "</section>",
        '<section><h2>Releases</h2>', _releases(view["releases"]), "</section>",
        '<section><h2>Events</h2>', _events(view["events"]), "</section>"])


def _summary(view: dict[str, Any]) -> str:
    live, warm = view["live"], view["warm"]
    base = f'/api/app/{escape(view["app"])}/{escape(view["env"])}'
    live_html = (f'<div class="big" id="live-release">release {live["number"]}</div>'
                 f'<div class="muted">{escape(live["digest"])} · live since '
                 f'{when(live["deployed"])}</div>') if live else \
        '<div class="big" id="live-release">none</div>'
    warm_html = "".join(
        f'<div class="big">release {w["number"]}</div><div class="muted">warm, stops in '
        f'{_v(w["expires_in"])} s ({when(w["warm_until"])})</div>' for w in warm) or \
        '<div class="muted">no warm release: a rollback restarts the previous one</div>'
    running = view["deploy"] is not None and view["deploy"]["status"] == "running"
    buttons = f'<button data-action="{base}/rollback" class="danger">Roll back</button>'
    if running:
        buttons += (f'<button data-action="{base}/promote">Promote</button>'
                    f'<button data-action="{base}/abort" class="danger">Abort</button>')
    return (f'<div class="cards"><div class="card"><h3>Live</h3>{live_html}</div>'
            f'<div class="card"><h3>Previous</h3>{warm_html}</div>'
            f'<div class="card"><h3>Actions</h3><div class="actions">{buttons}</div>'
            '<div class="muted">need the token</div></div></div>')


def _deploy(d: dict[str, Any] | None) -> str:
    if d is None:
        return ""
    status = {"running": "run", "succeeded": "ok"}.get(d["status"], "bad")
    steps = "".join(
        f'<li class="{"done" if s["done"] else ("now" if d["status"] == "running" else "bad")}">'
        f'{escape(s["step"])} <span class="muted">{when(s["started"])}'
        f'{" → " + when(s["done"]) if s["done"] else ""}</span></li>' for s in d["steps"])
    judge = ""
    if d["judge"]:
        j = d["judge"]
        figures = "".join(f"<tr><td>{escape(k)}</td><td>{escape(_fmt(v))}</td></tr>"
                          for k, v in j["figures"].items())
        judge = (f'<div class="judge" id="judge"><h3>Judge: {escape(j["label"])} — '
                 f'<span class="badge {"ok" if j["decision"] == "pass" else "run"}">'
                 f'{escape(j["decision"])}</span></h3><p>{escape(j["reason"])}</p>'
                 f'<table class="kv">{figures}</table></div>')
    verdicts = "".join(f'<li><span class="muted">{when(e["ts"])}</span> '
                       f'<b>{escape(e["kind"])}</b> {escape(e["message"])}</li>'
                       for e in d["events"])
    message = f'<p>{escape(d["message"])}</p>' if d["message"] else ""
    return (f'<section id="deploy" class="deploy"><h2>{escape(d["kind"])} of release '
            f'{d["release"]} <span class="muted">({escape(d["strategy"])}, from '
            f'{_v(d["previous"])})</span> <span class="badge {status}">{escape(d["status"])}'
            f'</span></h2>{message}<ol class="steps" id="steps">{steps}</ol>{judge}'
            f'<ul class="log">{verdicts}</ul></section>')


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _traffic(rows: list[dict[str, Any]]) -> str:
    return _table([{"release": _v(r["release"] or "no server"), "rps": _v(r["rps"]),
                    "error_rate": _pct(r["error_rate"]), "p99_ms": _v(r["p99_ms"]),
                    "share": f'{r["share"]}%'} for r in rows],
                  [("release", "release"), ("rps", "req/s"), ("error_rate", "errors"),
                   ("p99_ms", "p99 ms"), ("share", "share of requests")])


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2%}"


def _instances(view: dict[str, Any]) -> str:
    base = f'/app/{escape(view["app"])}/{escape(view["env"])}/logs/'
    rows = [{"id": f'<a href="{base}{escape(i["id"])}">{escape(i["id"])}</a>',
             "release": i["release"], "process": escape(i["process"]), "port": _v(i["port"]),
             "state": escape(i["state"]),
             "health": f'<span class="dot {escape(i["health"] or "none")}"></span>'
                       f'{_v(i["health"])}',
             "router": escape(i["router"]), "traffic": f'{i["traffic"]}%',
             "restarts": i["restarts"]} for i in view["instances"]]
    return _table(rows, [("id", "instance"), ("release", "release"), ("process", "process"),
                         ("port", "port"), ("state", "state"), ("health", "health"),
                         ("router", "router"), ("traffic", "traffic"),
                         ("restarts", "restarts")])


def _releases(rels: list[dict[str, Any]]) -> str:
    rows = [{"number": r["number"], "status": f'<span class="st {escape(r["status"])}">'
                                               f'{escape(r["status"])}</span>',
             "digest": escape(r["digest"]), "created": when(r["created"]),
             "deployed": when(r["deployed"]), "failure": _v(r["failure"])} for r in rels]
    return _table(rows, [("number", "#"), ("status", "status"), ("digest", "digest"),
                         ("created", "built"), ("deployed", "deployed"),
                         ("failure", "failure")])


def _events(events: list[dict[str, Any]]) -> str:
    items = "".join(f'<li><span class="muted">{when(e["ts"])}</span> <b>{escape(e["kind"])}</b>'
                    f' {escape(e["message"])}</li>' for e in events)
    return f'<ul class="log">{items}</ul>' if items else '<p class="muted">none</p>'


def logs(app: str, env: str, inst: str, lines: list[str]) -> str:
    text = escape("\n".join(lines)) or "(nothing written yet)"
    return (f'<h1><a href="/app/{escape(app)}/{escape(env)}">{escape(app)}</a> · '
            f'{escape(inst)}</h1><p class="muted">the last {len(lines)} lines</p>'
            f'<pre class="logs">{text}</pre>')


# charts -----------------------------------------------------------------------------------
def svg_charts(chart: dict[str, Any]) -> str:
    series: dict[int, list[list[Any]]] = chart["series"]
    if not series:
        return '<p class="muted">no requests in the last hour</p>'
    legend = "".join(f'<span><svg width="12" height="12" aria-hidden="true"><rect width="12" '
                     f'height="12" rx="2" fill="{_color(rel)}"/></svg> release {rel}</span>'
                     for rel in series)
    panels = "".join(_panel(chart, col, title, unit) for col, title, unit in
                     ((1, "requests per second", ""), (2, "error rate", "%"),
                      (3, "p99 latency", " ms")))
    return f'<div class="legend">{legend}</div><div class="charts">{panels}</div>'


def _color(release: int) -> str:
    return COLORS[release % len(COLORS)]


def _panel(chart: dict[str, Any], col: int, title: str, unit: str) -> str:
    start, end = chart["start"], chart["end"]
    scale = 100.0 if unit == "%" else 1.0
    values = [p[col] * scale for pts in chart["series"].values() for p in pts
              if p[col] is not None]
    peak = max(values, default=0.0)
    top = peak or 1.0
    lines = []
    for rel, pts in chart["series"].items():
        xy = [(_x(p[0], start, end), _y(p[col] * scale, top)) for p in pts if p[col] is not None]
        coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
        if len(xy) > 1:
            lines.append(f'<polyline fill="none" stroke="{_color(rel)}" stroke-width="2" '
                         f'vector-effect="non-scaling-stroke" points="{coords}">'
                         f"<title>release {rel}</title></polyline>")
        elif xy:
            lines.append(f'<circle cx="{xy[0][0]:.1f}" cy="{xy[0][1]:.1f}" r="3" '
                         f'fill="{_color(rel)}"><title>release {rel}</title></circle>')
    return (f'<figure class="chart"><figcaption>{escape(title)} <span class="muted">max '
            f'{peak:.3g}{escape(unit)}</span></figcaption>'
            f'<svg viewBox="0 0 {W} {H}" preserveAspectRatio="none" role="img" '
            f'aria-label="{escape(title)}">'
            f'<line x1="0" y1="{H}" x2="{W}" y2="{H}" class="axis"/>'
            f'<line x1="0" y1="{PAD}" x2="{W}" y2="{PAD}" class="grid"/>'
            f'{"".join(lines)}'
            f'</svg><div class="ticks"><span>-{_span(end - start)}</span><span>now</span></div>'
            "</figure>")


def _span(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def _x(t: float, start: float, end: float) -> float:
    return (t - start) / max(end - start, 1) * W


def _y(value: float, top: float) -> float:
    return H - (value / top) * (H - PAD)
