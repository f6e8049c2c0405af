"""HTTPS against HTTP on the same router: the example app (one instance) with [router] tls =
"acme", its certificate issued by pebble (Let's Encrypt's test server, run here), then the same
wrk load through the HTTP port and through the HTTPS port, kept-alive connections at 2 and 16,
and new connections (a TLS handshake per request) at 16. Prints JSON: throughput ratio
(HTTPS / HTTP, target at least 0.8) and added p99 latency. Loopback only; about a minute."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.common import BenchApp, machine, parse_wrk, wrk

PORT, HTTPS_PORT = 18370, 18373
SECONDS = 8


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
        runs = {}
        for name, conns, extra in (("keepalive_2", 2, []), ("keepalive_16", 16, []),
                                   ("new_connection_16", 16, ["-H", "Connection: close"])):
            plain = parse_wrk(_wrk(http, conns, extra))
            tls = parse_wrk(_wrk(https, conns, extra))
            runs[name] = {"http": plain, "https": tls,
                          "throughput_ratio": round(tls["rps"] / plain["rps"], 3)
                          if plain["rps"] else None,
                          "added_p99_ms": round(tls["p99_ms"] - plain["p99_ms"], 2)}
        print(json.dumps({"benchmark": "tls", "certificate_issued_s": issued,
                          "deploy_and_issue_s": round(time.monotonic() - started, 1),
                          "seconds_per_run": SECONDS, **runs, "target_ratio": 0.8,
                          "load_average_1m": {"before": round(load, 2),
                                              "after": round(os.getloadavg()[0], 2)},
                          "machine": machine()}, indent=2))
    finally:
        app.close()
        acme.stop()


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
