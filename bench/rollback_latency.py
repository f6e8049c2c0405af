"""Rollback latency: from `headway rollback` starting to every response coming from the old
release, measured by a poller hitting the router, over 10 runs. Prints JSON."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time

import httpx

from bench.common import BenchApp, machine

FAILED: list[int] = []


def main() -> None:
    app = BenchApp(18182)
    try:
        app.headway("deploy")
        app.write("VERSION", "v2\n")
        app.headway("deploy")
        command, switched = [], []
        for run in range(10):
            want = "v1" if run % 2 == 0 else "v2"
            t0 = time.monotonic()
            first_all_old = _time_to_version(app, want, t0, release=want[1:])
            command.append(time.monotonic() - t0)
            switched.append(first_all_old)
        print(json.dumps({
            "benchmark": "rollback_latency", "runs": 10,
            "to_all_traffic_on_target_s": {"median": statistics.median(switched),
                                           "max": max(switched)},
            "command_wall_s": {"median": statistics.median(command), "max": max(command)},
            "failed_requests_during_rollbacks": len(FAILED),
            "note": "times include starting the headway CLI (Python) itself",
            "machine": machine()}, indent=2))
    finally:
        app.close()


def _time_to_version(app: BenchApp, want: str, t0: float, *, release: str) -> float:
    """Run `headway rollback RELEASE` (alternating between two warm releases); return the time
    from its start until the router's answers are all `want` (20 consecutive GETs), and
    count any answer that is not a 200 as a failure."""
    seen: list[float] = []
    done = threading.Event()

    def poll() -> None:
        streak = 0
        with httpx.Client(timeout=5) as client:
            while not done.is_set():
                resp = client.get(app.url)
                if resp.status_code != 200:
                    FAILED.append(resp.status_code)
                    continue
                version = resp.json()["version"]
                streak = streak + 1 if version == want else 0
                if streak == 1:
                    seen[:] = [time.monotonic() - t0]
                if streak >= 20:
                    return

    poller = threading.Thread(target=poll)
    poller.start()
    subprocess.run([sys.executable, "-m", "headway", "rollback", release], cwd=app.dir, env=app.env,
                   check=True, capture_output=True)
    poller.join(timeout=10)
    done.set()
    return seen[0]


if __name__ == "__main__":
    main()
