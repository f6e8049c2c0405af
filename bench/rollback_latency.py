"""Rollback latency: from `headway rollback` starting to every response coming from the target
release (a warm one: a traffic switch), measured by a poller hitting the router, idle and while
wrk saturates the machine (`wrk -t2 -c64` on the same router). Prints JSON; `--out FILE` also
writes it there.

    python -m bench.rollback_latency --runs 8 --out bench/results/rollback_latency.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from bench.common import BenchApp, machine

STREAK = 20  # consecutive answers from the target that count as "all traffic on it"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=8, help="rollbacks per phase")
    parser.add_argument("--port", type=int, default=18182, help="router port (and the next two)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections when loaded")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    app = BenchApp(args.port)
    try:
        app.headway("deploy")
        app.write("VERSION", "v2\n")
        app.headway("deploy")
        result = {"benchmark": "rollback_latency", "runs_per_phase": args.runs,
                  "idle": phase(app, args.runs),
                  "loaded": phase(app, args.runs, connections=args.connections),
                  "note": "from the start of the `headway rollback` process (Python start-up "
                          "included) to the first of 20 consecutive answers from the target; "
                          f"loaded: wrk -t2 -c{args.connections} on the router throughout; "
                          "cli_cpu_until_target_s: CPU the rollback command had used by then "
                          "(what it needs before the switch, less sensitive than wall time to "
                          "whatever else the machine runs: see load_average_1m_at_end)",
                  "machine": machine()}
    finally:
        app.close()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


def phase(app: BenchApp, runs: int, *, connections: int = 0) -> dict[str, object]:
    """`runs` (even) rollbacks alternating between the two warm releases, under wrk if
    connections."""
    runs += runs % 2
    load = subprocess.Popen(["wrk", "-t2", f"-c{connections}", f"-d{runs * 6 + 10}s", app.url],
                            stdout=subprocess.PIPE, text=True) if connections else None
    failed: list[str] = []
    switched, command, cpu = [], [], []
    try:
        if load:
            time.sleep(2)  # let wrk saturate first
        for run in range(runs):
            target = 1 if run % 2 == 0 else 2  # release 2 (v2) is live when a phase starts
            to_target, wall, cpu_seconds = _rollback(app, target, failed)
            switched.append(to_target)
            command.append(wall)
            cpu.append(cpu_seconds)
    finally:
        if load:
            load.terminate()
            load.wait()
    return {"load_average_1m_at_end": round(os.getloadavg()[0], 1),
            "to_all_traffic_on_target_s": _stats(switched),
            "command_wall_s": _stats(command), "cli_cpu_until_target_s": _stats(cpu),
            "failed_poller_requests": len(failed),
            "failures": dict(Counter(failed)),
            **({"wrk": f"wrk -t2 -c{connections}"} if connections else {})}


def _stats(values: list[float]) -> dict[str, object]:
    return {"median": round(statistics.median(values), 3), "max": round(max(values), 3),
            "min": round(min(values), 3), "all": [round(v, 3) for v in values]}


def _rollback(app: BenchApp, target: int, failed: list[str]) -> tuple[float, float, float]:
    """Run `headway rollback TARGET` (a warm release, serving vTARGET); return (seconds from its
    start until the router's answers are all `want`, the command's wall time, the CPU seconds
    the command had used when the first answer from the target came: what it needs before the
    switch, whatever else the machine runs). Any answer that is not a 200 counts as failed."""
    seen: list[float] = []
    used: list[float] = []
    pid: list[int] = []
    want = f"v{target}"
    t0 = time.monotonic()

    def poll() -> None:
        streak = 0
        deadline = t0 + 30
        with httpx.Client(timeout=5) as client:
            while time.monotonic() < deadline:
                try:
                    resp = client.get(app.url)
                except httpx.HTTPError as exc:
                    failed.append(type(exc).__name__)
                    continue
                if resp.status_code != 200:
                    failed.append(str(resp.status_code))
                    continue
                streak = streak + 1 if resp.json()["version"] == want else 0
                if streak == 1:
                    seen[:] = [time.monotonic() - t0]
                    used[:] = [_cpu(pid[0]) if pid else 0.0]
                if streak >= STREAK:
                    return

    poller = threading.Thread(target=poll)
    proc = subprocess.Popen([sys.executable, "-m", "headway", "rollback", str(target)],
                            cwd=app.dir, env=app.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    pid.append(proc.pid)
    poller.start()
    _, stderr = proc.communicate()
    wall = time.monotonic() - t0
    poller.join(timeout=30)
    if proc.returncode != 0 or not seen:
        raise SystemExit(f"rollback to {target} failed ({proc.returncode}):\n{stderr}")
    return seen[0], wall, used[0]


def _cpu(pid: int) -> float:
    """User + system CPU seconds of a running process (0 once it has exited)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
