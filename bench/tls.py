"""HTTPS against HTTP on the same router: the example app (one instance) with [router] tls =
"acme", its certificate issued by pebble (Let's Encrypt's test server, run here), then the same
wrk load through the HTTP port and through the HTTPS port, kept-alive connections at 2 and 16,
and new connections (a TLS handshake per request) at 16. Prints JSON: throughput ratio
(HTTPS / HTTP, target at least 0.8), added p99 latency, and for each run the CPU seconds used
by wrk, by HAProxy, by the app and by everything else on the machine (the load generator shares
the 2 cores with the router: a ratio its own TLS lowers is the client's, not the router's).
`--seconds`, `--rounds`. Loopback only; about six minutes with the defaults."""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import BenchApp, machine, parse_wrk

PORT, HTTPS_PORT = 18370, 18373
SECONDS = 10
ROUNDS = 5  # HTTP and HTTPS in turns, per setting
TICK = os.sysconf("SC_CLK_TCK")
SETTINGS = {"keepalive_2": (2, []), "keepalive_16": (16, []),
            "new_connection_16": (16, ["-H", "Connection: close"])}


def main() -> None:
    global SECONDS, ROUNDS
    from tests.pebble import Pebble

    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=SECONDS, help="per wrk run")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="HTTP/HTTPS pairs per setting")
    parser.add_argument("--settings", default=",".join(SETTINGS),
                        help="which of " + ", ".join(SETTINGS))
    parser.add_argument("--no-renewal", action="store_true", help="skip the renewal under load")
    args = parser.parse_args()
    SECONDS, ROUNDS = args.seconds, args.rounds

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
        for name in args.settings.split(","):
            conns, extra = SETTINGS[name]
            runs[name] = _compare(app, http, https, conns, extra)
        if not args.no_renewal:
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


def _compare(app: BenchApp, http: str, https: str, conns: int,
             extra: list[str]) -> dict[str, object]:
    """HTTP and HTTPS runs taken in turns, ROUNDS times (the machine's other work drifts):
    the median of each figure, and the CPU each side used per 1,000 requests."""
    plain: list[dict[str, float]] = []
    tls: list[dict[str, float]] = []
    plain_cpu: list[dict[str, float]] = []
    tls_cpu: list[dict[str, float]] = []
    for _ in range(ROUNDS):
        for url, results, cpus in ((http, plain, plain_cpu), (https, tls, tls_cpu)):
            text, cpu = _measured(app, url, conns, extra)
            results.append(parse_wrk(text))
            cpus.append(cpu)
    ratios = [t["rps"] / p["rps"] for p, t in zip(plain, tls, strict=True) if p["rps"]]
    added = [t["p99_ms"] - p["p99_ms"] for p, t in zip(plain, tls, strict=True)]
    return {"http_rps": [p["rps"] for p in plain], "https_rps": [t["rps"] for t in tls],
            "http_p99_ms": [p["p99_ms"] for p in plain], "https_p99_ms": [t["p99_ms"] for t in tls],
            "failed": sum(int(r["non_2xx"]) + int(r["socket_errors"]) for r in plain + tls),
            "throughput_ratio": round(statistics.median(ratios), 3) if ratios else None,
            "ratio_of_medians": round(statistics.median(t["rps"] for t in tls)
                                      / statistics.median(p["rps"] for p in plain), 3)
            if plain and statistics.median(p["rps"] for p in plain) else None,
            "ratios": [round(r, 3) for r in ratios],
            "added_p99_ms": round(statistics.median(added), 2),
            "cpu_s_http": plain_cpu, "cpu_s_https": tls_cpu,
            "cpu_ms_per_1000_requests": {
                "http": _per_thousand(plain_cpu, plain), "https": _per_thousand(tls_cpu, tls)}}


def _measured(app: BenchApp, url: str, conns: int, extra: list[str]) -> tuple[str, dict[str, float]]:
    """One wrk run and the CPU seconds it took from wrk, HAProxy, the app and the rest of the
    machine (all cores; the machine's total minus the three)."""
    haproxy, served = _pids(app, b"haproxy"), _pids(app, b"app.py")
    before = (_ticks(haproxy), _ticks(served), _machine_ticks(),
              resource.getrusage(resource.RUSAGE_CHILDREN))
    text = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{SECONDS}s", "--latency", *extra, url],
                          capture_output=True, text=True, check=False).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = (after.ru_utime - before[3].ru_utime) + (after.ru_stime - before[3].ru_stime)
    router = (_ticks(haproxy) - before[0]) / TICK
    server = (_ticks(served) - before[1]) / TICK
    machine_busy = (_machine_ticks() - before[2]) / TICK
    return text, {"wrk": round(client, 2), "haproxy": round(router, 2), "app": round(server, 2),
                  "others": round(max(machine_busy - client - router - server, 0.0), 2)}


def _per_thousand(cpus: list[dict[str, float]], runs: list[dict[str, float]]) -> dict[str, float]:
    """Median CPU milliseconds per 1,000 requests, per side."""
    return {side: round(statistics.median(1e6 * c[side] / r["requests"]
                                          for c, r in zip(cpus, runs, strict=True)
                                          if r["requests"]), 1)
            for side in ("wrk", "haproxy", "app")}


def _pids(app: BenchApp, word: bytes) -> list[int]:
    """Processes of this bench's home (or of the folder its apps run from, outside the home)
    whose command line has `word`."""
    from headway.runtime.appuser import app_root

    home = str(app.tmp).encode()
    runs_from = str(app_root(app.tmp / "home")).encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            where = os.readlink(f"/proc/{entry}/cwd").encode()
        except OSError:
            continue
        if word in cmd and (home in cmd or where.startswith((home, runs_from))):
            found.append(int(entry))
    return found


def _ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


def _machine_ticks() -> int:
    """Busy ticks of all CPUs (everything but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4]


def _renewal_under_load(app: BenchApp, url: str) -> dict[str, object]:
    """`headway tls renew --force` while wrk sends HTTPS requests, half of them each on a new
    connection (a handshake during the swap): every failed request counts."""
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


if __name__ == "__main__":
    main()
