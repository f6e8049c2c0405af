"""Constant load through the router (wrk) while doing 20 deploys (blue-green and rolling
alternating), 3 failing deploys and 5 rollbacks. Prints JSON: requests, failures, switch times.
`--runtime podman`: the same with containers (10 deploys, 2 failing, 2 rollbacks)."""

from __future__ import annotations

import argparse
import json
import re
import statistics

from bench.common import BenchApp, machine, parse_wrk, wrk


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runtime", default="process", choices=["process", "podman"])
    runtime = parser.parse_args().runtime
    rounds = 20 if runtime == "process" else 10
    app = BenchApp(18181, runtime=runtime)
    try:
        app.headway("deploy")
        load = wrk(app.url, 120)
        switches, deploys, failed, rollbacks = [], 0, 0, 0
        for n in range(1, rounds + 1):
            strategy = "rolling" if n % 2 else "blue-green"
            app.set('strategy = "blue-green"', f'strategy = "{strategy}"')
            app.set('strategy = "rolling"', f'strategy = "{strategy}"')
            app.write("VERSION", f"v{n + 1}\n")
            out = app.headway("deploy").stdout
            deploys += 1
            m = re.search(r"switched in (\d+) ms", out)
            if m:
                switches.append(int(m.group(1)))
            if n in (5, 10, 15):
                app.write("BROKEN", "crash")
                app.write("VERSION", f"broken-{n}\n")
                failed += app.headway("deploy", check=False).returncode == 4
                app.write("BROKEN", None)
            if n % 4 == 0:
                app.headway("rollback")
                rollbacks += 1
        app.headway("status")
        stdout, _ = load.communicate()
        result = parse_wrk(stdout)
        print(json.dumps({
            "benchmark": "zero_downtime", "runtime": runtime, "deploys": deploys, "failed_deploys_refused": failed,
            "rollbacks": rollbacks, **result,
            "failed_requests": result["non_2xx"] + result["socket_errors"] + result["timeouts"],
            "switch_ms_median": statistics.median(switches) if switches else None,
            "switch_ms_max": max(switches) if switches else None, "machine": machine(),
        }, indent=2))
    finally:
        app.close()


if __name__ == "__main__":
    main()
