"""HTTPS against HTTP on the same router: the example app (one instance) with [router] tls =
"acme", its certificate issued by pebble (Let's Encrypt's test server, run here), then the same
wrk load through the HTTP port and through the HTTPS port, kept-alive connections at 2 and 16,
and new connections (a TLS handshake per request) at 16. Prints JSON: throughput ratio
(HTTPS / HTTP, target at least 0.8) and added p99 latency. Loopback only; about a minute."""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import BenchApp, machine, parse_wrk, wrk

PORT, HTTPS_PORT = 18370, 18373
SECONDS = 4
ROUNDS = 3  # HTTP and HTTPS in turns, per setting


def main() -> None:
    from tests.pebble import Pebble

    acme = Pebble(Path(tempfile.mkdtemp(prefix="headway-bench-pebble-")), http_port=PORT).start()
    app = BenchApp(PORT, replicas=1)
    try:
        app.set('address = "127.0.0.1"', f'address = "127.0.0.1"\nhosts = ["shop.test"]\n'
                f'tls = "acme"\nhttps_port = {HTTPS_PORT}')
        (app.dir / "headway.toml").write_text((app.dir / "headway.toml").read_text() + (
            f'\n[router.acme]\ndirectory = "{acme.directory}"\nca_bundle = "{acme.ca_bundle}"\n'))
        load = os.getloadavg()[0]  # other work on the machine skews every figure
        started = time.monotonic()
        app.headway("deploy")
        issued = _wait_issued(app)
        # Host 127.0.0.1 is not shop.test: HTTP reaches the app (the default backend) instead
        # of the redirect, so both runs take the same route but for TLS
        http, https = f"http://127.0.0.1:{PORT}/", f"https://127.0.0.1:{HTTPS_PORT}/"
        runs: dict[str, object] = {}
        for name, conns, extra in (("keepalive_2", 2, []), ("keepalive_16", 16, []),
                                   ("new_connection_16", 16, ["-H", "Connection: close"])):
            runs[name] = _compare(http, https, conns, extra)
        runs["renewal_under_load"] = _renewal_under_load(app, https)
        print(json.dumps({"benchmark": "tls", "certificate_issued_s": issued,
                          "deploy_and_issue_s": round(time.monotonic() - started, 1),
                          "seconds_per_run": SECONDS, "rounds": ROUNDS, **runs, "target_ratio": 0.8,
                          "load_average_1m": {"before": round(load, 2),
                                              "after": round(os.getloadavg()[0], 2)},
                          "machine": machine()}, indent=2))
    finally:
        app.close()
        acme.stop()


def _compare(http: str, https: str, conns: int, extra: list[str]) -> dict[str, object]:
    """HTTP and HTTPS runs taken in turns, ROUNDS times (the machine's other work drifts):
    the median of each figure."""
    plain, tls = [], []
    for _ in range(ROUNDS):
        plain.append(parse_wrk(_wrk(http, conns, extra)))
        tls.append(parse_wrk(_wrk(https, conns, extra)))
    ratios = [t["rps"] / p["rps"] for p, t in zip(plain, tls, strict=True) if p["rps"]]
    added = [t["p99_ms"] - p["p99_ms"] for p, t in zip(plain, tls, strict=True)]
    return {"http_rps": [p["rps"] for p in plain], "https_rps": [t["rps"] for t in tls],
            "http_p99_ms": [p["p99_ms"] for p in plain], "https_p99_ms": [t["p99_ms"] for t in tls],
            "failed": sum(int(r["non_2xx"]) + int(r["socket_errors"]) for r in plain + tls),
            "throughput_ratio": round(statistics.median(ratios), 3) if ratios else None,
            "added_p99_ms": round(statistics.median(added), 2)}


def _renewal_under_load(app: BenchApp, url: str) -> dict[str, object]:
    """`headway tls renew --force` while wrk sends HTTPS requests, half of them each on a new
    connection (a handshake during the swap): every failed request counts."""
    import subprocess

    argv = ["wrk", "-t1", "-c8", "-d15s", "--latency", url]
    loads = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True),
             subprocess.Popen([*argv[:-1], "-H", "Connection: close", url],
                              stdout=subprocess.PIPE, text=True)]
    time.sleep(2)
    started = time.monotonic()
    renewed = app.headway("tls", "renew", "--force")
    took = round(time.monotonic() - started, 2)
    results = [parse_wrk(p.communicate()[0]) for p in loads]
    return {"renew_command_s": took, "reloaded": "config reload" in renewed.stdout + renewed.stderr,
            "kept_alive": results[0], "new_connections": results[1],
            "failed_requests": sum(int(r["non_2xx"]) + int(r["socket_errors"]) + int(r["timeouts"])
                                   for r in results)}


def _wait_issued(app: BenchApp) -> float:
    started = time.monotonic()
    while time.monotonic() - started < 60:
        rows = json.loads(app.headway("tls", "status", "--json").stdout)
        if rows and rows[0]["state"] == "ok":
            time.sleep(1)  # the reload that opens the HTTPS listener
            return round(time.monotonic() - started, 1)
        if rows and rows[0]["state"] == "failed":
            sys.exit(f"issuance failed: {rows[0]['error']}")
        time.sleep(0.5)
    sys.exit("no certificate within 60 s")


def _wrk(url: str, connections: int, extra: list[str]) -> str:
    if not extra:
        return str(wrk(url, SECONDS, connections=connections).communicate()[0])
    import subprocess

    return subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{SECONDS}s", "--latency",
                           *extra, url], capture_output=True, text=True, check=False).stdout


if __name__ == "__main__":
    main()
