"""Scale: 1, 10 and 50 apps of 2 instances each (process runtime, a stdlib HTTP app) behind one
router port, told apart by their `[router] hosts`. For each size, in a fresh $HEADWAY_HOME:
the first deploy of every app (seconds), a second deploy of a few of them (seconds, and the
traffic switch inside it), then the agent's and HAProxy's CPU (% of one core) and memory (RSS)
at rest and while wrk spreads requests over every app's Host. Prints JSON, with how each figure
grows from the smallest size to the largest (per added app). Loopback only; wrk runs 10 s.

    python -m bench.scale --sizes 1,10,50 --out bench/results/scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import machine, parse_wrk

APP = '''"""A tiny stdlib app for bench/scale: answers its version on /, ok on /up."""
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = open("VERSION").read().strip()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = json.dumps({"version": VERSION}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer((os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"])),
                    Handler).serve_forever()
'''

TOML = '''[app]
name = "{name}"
runtime = "process"

[processes.web]
command = "python3 app.py"
replicas = 2

[processes.web.health]
path = "/up"

[deploy]
strategy = "blue-green"
keep_previous = "2s"
drain_timeout = "5s"

[router]
port = {port}
address = "127.0.0.1"
hosts = ["{name}.scale.test"]

[observe]
metrics_port = {metrics}
router_metrics_port = 0
'''

WRK_SCRIPT = '''-- every request to the next app's Host, round robin
local hosts = {{{hosts}}}
local i = 0
request = function()
  i = i % #hosts + 1
  return wrk.format("GET", "/", {{["Host"] = hosts[i]}})
end
'''

SWITCH = re.compile(r"in ([\d.]+)s \(traffic switched in (\d+) ms\)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1,10,50", help="numbers of apps, comma-separated")
    parser.add_argument("--port", type=int, default=18382, help="router port (+1: metrics)")
    parser.add_argument("--redeploys", type=int, default=3, help="second deploys per size")
    parser.add_argument("--seconds", type=int, default=10, help="each CPU window and wrk run")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    results = []
    for n in sizes:
        results.append(run_size(n, args.port, redeploys=args.redeploys, seconds=args.seconds))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    report = {"benchmark": "scale", "sizes": results, "growth": growth(results),
              "note": "each app: 2 instances of a stdlib HTTP server (process runtime); "
                      "CPU in % of one core over the window; wrk -t2 -c32 spread over every "
                      "app's Host header", "machine": machine(),
              "load_average_1m_at_end": round(os.getloadavg()[0], 1)}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


class Host:
    """A fresh $HEADWAY_HOME with `n` apps, each in its own folder."""

    def __init__(self, n: int, port: int) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="headway-scale-"))
        self.env = dict(os.environ, HEADWAY_HOME=str(self.tmp / "home"))
        self.port, self.names = port, [f"s{k}" for k in range(n)]
        for name in self.names:
            folder = self.tmp / name
            folder.mkdir()
            (folder / "app.py").write_text(APP)
            (folder / "VERSION").write_text("v1\n")
            (folder / "headway.toml").write_text(TOML.format(name=name, port=port,
                                                             metrics=port + 1))

    def headway(self, name: str, *args: str) -> tuple[float, str]:
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "headway", *args], cwd=self.tmp / name,
                              env=self.env, capture_output=True, text=True, timeout=600,
                              check=False)
        if proc.returncode != 0:
            raise SystemExit(f"headway {' '.join(args)} ({name}) failed:\n{proc.stderr}")
        return time.monotonic() - t0, proc.stdout

    def pid(self, name: str) -> int:
        if name == "agent":
            return int((self.tmp / "home" / "agent.pid").read_text())
        found = list((self.tmp / "home").rglob("haproxy.pid"))
        return int(found[0].read_text().split()[0])

    def close(self) -> None:
        def destroy(name: str) -> None:
            subprocess.run([sys.executable, "-m", "headway", "destroy", "--yes"],
                           cwd=self.tmp / name, env=self.env, capture_output=True, timeout=300,
                           check=False)

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(destroy, self.names))
        shutil.rmtree(self.tmp, ignore_errors=True)


def run_size(n: int, port: int, *, redeploys: int, seconds: int) -> dict[str, Any]:
    host = Host(n, port)
    try:
        first = [host.headway(name, "deploy")[0] for name in host.names]
        second, switches = [], []
        for name in host.names[:redeploys]:
            (host.tmp / name / "VERSION").write_text("v2\n")
            took, out = host.headway(name, "deploy")
            second.append(took)
            if m := SWITCH.search(out):
                switches.append(int(m.group(2)) / 1000)
        time.sleep(5)  # keep_previous runs out: 2 instances per app again
        rest = usage(host, seconds)
        loaded, wrk = under_load(host, seconds)
        return {"apps": n, "instances": 2 * n,
                "first_deploy_s": summary(first), "second_deploy_s": summary(second),
                "switch_s": summary(switches), "at_rest": rest, "under_load": loaded,
                "wrk": wrk}
    finally:
        host.close()


def under_load(host: Host, seconds: int) -> tuple[dict[str, Any], dict[str, float]]:
    script = host.tmp / "hosts.lua"
    script.write_text(WRK_SCRIPT.format(hosts=", ".join(f'"{n}.scale.test"'
                                                       for n in host.names)))
    load = subprocess.Popen(["wrk", "-t2", "-c32", f"-d{seconds + 2}s", "--latency",
                             "-s", str(script), f"http://127.0.0.1:{host.port}/"],
                            stdout=subprocess.PIPE, text=True)
    time.sleep(1)
    figures = usage(host, seconds)
    out, _ = load.communicate(timeout=60)
    return figures, parse_wrk(out)


def usage(host: Host, seconds: int) -> dict[str, Any]:
    """CPU (% of one core) over `seconds` and RSS (MiB) at the end, of the agent and HAProxy."""
    pids = {"agent": [host.pid("agent")], "haproxy": tree(host.pid("haproxy"))}
    before = {name: sum(map(cpu_seconds, group)) for name, group in pids.items()}
    time.sleep(seconds)
    return {name: {"cpu_percent": round(100 * (sum(map(cpu_seconds, group)) - before[name])
                                        / seconds, 1),
                   "rss_mib": round(sum(map(rss_mib, group)), 1)}
            for name, group in pids.items()}


def tree(pid: int) -> list[int]:
    """HAProxy's master and its worker(s)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *map(int, children)]


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0.0
    for line in lines:
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def summary(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"median": round(statistics.median(values), 3), "max": round(max(values), 3),
            "n": len(values)}


def growth(results: list[dict[str, Any]]) -> dict[str, float | None]:
    """Per added app, from the smallest size to the largest: seconds, % CPU, MiB."""
    if len(results) < 2:
        return {}
    lo, hi = results[0], results[-1]
    apps = hi["apps"] - lo["apps"]

    def slope(path: list[str]) -> float | None:
        a, b = _get(lo, path), _get(hi, path)
        return None if a is None or b is None else round((b - a) / apps, 4)

    return {"first_deploy_s_per_app": slope(["first_deploy_s", "median"]),
            "switch_s_per_app": slope(["switch_s", "median"]),
            "agent_cpu_rest_percent_per_app": slope(["at_rest", "agent", "cpu_percent"]),
            "agent_cpu_load_percent_per_app": slope(["under_load", "agent", "cpu_percent"]),
            "agent_rss_mib_per_app": slope(["at_rest", "agent", "rss_mib"]),
            "haproxy_rss_mib_per_app": slope(["at_rest", "haproxy", "rss_mib"])}


def _get(data: Any, path: list[str]) -> float | None:
    for key in path:
        if data is None:
            return None
        data = data.get(key)
    return float(data) if data is not None else None


if __name__ == "__main__":
    main()
