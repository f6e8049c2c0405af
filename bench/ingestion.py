"""The cost of the per-request log the agent ingests: router throughput (wrk, one instance)
with [observe] request_log on and off, alternating twice, in one run. Prints JSON."""

from __future__ import annotations

import json
import statistics

from bench.common import BenchApp, machine, parse_wrk, wrk


def main() -> None:
    app = BenchApp(18200, replicas=1)
    runs: dict[str, list[float]] = {"on": [], "off": []}
    try:
        for n, state in enumerate(["on", "off", "on", "off"]):
            app.set(f"request_log = {'false' if state == 'on' else 'true'}\n", "")
            if state == "off":
                app.set("[observe]\n", "[observe]\nrequest_log = false\n")
            app.write("VERSION", f"v{n}\n")
            app.headway("deploy")
            runs[state].append(parse_wrk(wrk(app.url, 10).communicate()[0])["rps"])
        on, off = statistics.mean(runs["on"]), statistics.mean(runs["off"])
        print(json.dumps({"benchmark": "request_log_ingestion", "rps_with_log": runs["on"],
                          "rps_without_log": runs["off"], "throughput_ratio": round(on / off, 3),
                          "machine": machine()}, indent=2))
    finally:
        app.close()


if __name__ == "__main__":
    main()
