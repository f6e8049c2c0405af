"""Constant load through the router (wrk) while doing 20 deploys (blue-green and rolling
alternating), 3 failing deploys and 5 rollbacks. Prints JSON: requests, failures, switch times.
`--runtime podman` or `docker`: the same with containers (10 deploys, 2 failing, 2 rollbacks);
docker needs a daemon that answers (DOCKER_HOST), which Headway does not start. Each deploy's and
rollback's wall time (and the time Headway reports, without the CLI's start-up) is in the JSON
too, to compare engines run back to back. `--rounds N`:
fewer deploys (a shorter run on a busy machine)."""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time

from bench.common import BenchApp, machine, parse_wrk, wrk


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runtime", default="process", choices=["process", "podman", "docker"])
    parser.add_argument("--rounds", type=int, default=0)
    args = parser.parse_args()
    runtime = args.runtime
    rounds = args.rounds or (20 if runtime == "process" else 10)
    app = BenchApp(18181, runtime=runtime)
    try:
        started = time.monotonic()
        app.headway("deploy")
        first = time.monotonic() - started
        load = wrk(app.url, 120)
        switches, deploys, failed, rollbacks = [], 0, 0, 0
        deploy_s: list[float] = []
        rollback_s: list[float] = []
        refuse_s: list[float] = []
        live_s: list[float] = []  # as Headway reports it ("is live in"), without CLI start-up
        rollback_live_s: list[float] = []
        for n in range(1, rounds + 1):
            strategy = "rolling" if n % 2 else "blue-green"
            app.set('strategy = "blue-green"', f'strategy = "{strategy}"')
            app.set('strategy = "rolling"', f'strategy = "{strategy}"')
            app.write("VERSION", f"v{n + 1}\n")
            started = time.monotonic()
            out = app.headway("deploy").stdout
            deploy_s.append(time.monotonic() - started)
            deploys += 1
            if m := re.search(r"is live in ([\d.]+)s", out):
                live_s.append(float(m.group(1)))
            m = re.search(r"switched in (\d+) ms", out)
            if m:
                switches.append(int(m.group(1)))
            if n in (5, 10, 15):
                app.write("BROKEN", "crash")
                app.write("VERSION", f"broken-{n}\n")
                started = time.monotonic()
                failed += app.headway("deploy", check=False).returncode == 4
                refuse_s.append(time.monotonic() - started)
                app.write("BROKEN", None)
            if n % 4 == 0:
                started = time.monotonic()
                back = app.headway("rollback").stdout
                rollback_s.append(time.monotonic() - started)
                if m := re.search(r"live again in ([\d.]+)s", back):
                    rollback_live_s.append(float(m.group(1)))
                rollbacks += 1
        app.headway("status")
        stdout, _ = load.communicate()
        result = parse_wrk(stdout)
        print(json.dumps({
            "benchmark": "zero_downtime", "runtime": runtime, "deploys": deploys, "failed_deploys_refused": failed,
            "rollbacks": rollbacks, **result,
            "failed_requests": result["non_2xx"] + result["socket_errors"] + result["timeouts"],
            "switch_ms_median": statistics.median(switches) if switches else None,
            "switch_ms_max": max(switches) if switches else None,
            "first_deploy_s": round(first, 1), "deploy_s_median": _median(deploy_s),
            "deploy_s_max": round(max(deploy_s), 1) if deploy_s else None,
            "refused_deploy_s_median": _median(refuse_s),
            "deploy_reported_s_median": _median(live_s),
            "rollback_s_median": _median(rollback_s),
            "rollback_reported_s_median": _median(rollback_live_s), "machine": machine(),
        }, indent=2))
    finally:
        app.close()


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


if __name__ == "__main__":
    main()
