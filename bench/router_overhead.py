"""The same wrk load direct to one instance and through the router (one instance behind it),
in one run. Prints JSON: throughput ratio and added p99 latency."""

from __future__ import annotations

import json

from bench.common import BenchApp, machine, parse_wrk, wrk


def main() -> None:
    app = BenchApp(18183, replicas=1)
    try:
        app.headway("deploy")
        status = json.loads(app.headway("status", "--json").stdout)
        port = status["instances"][0]["port"]
        runs = {}
        # 2 connections: the app is not saturated, so latency is the router's own cost;
        # 16 connections: the app is saturated (one uvicorn process), throughput is the test.
        for conns in (2, 16):
            direct = parse_wrk(wrk(f"http://127.0.0.1:{port}/", 10, connections=conns
                                   ).communicate()[0])
            routed = parse_wrk(wrk(app.url, 10, connections=conns).communicate()[0])
            runs[f"connections_{conns}"] = {
                "direct": direct, "router": routed,
                "throughput_ratio": round(routed["rps"] / direct["rps"], 3),
                "added_p99_ms": round(routed["p99_ms"] - direct["p99_ms"], 2)}
        print(json.dumps({"benchmark": "router_overhead", **runs, "machine": machine()},
                         indent=2))
    finally:
        app.close()


if __name__ == "__main__":
    main()
