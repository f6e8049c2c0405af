"""Fleet deploy time over SSH for 1, 2 and 4 test hosts (network namespaces with their own
sshd, made here as tests/test_fleet.py makes them), with load through every host's router
during each timed deploy. The load is paced (--rate requests a second per host): every test
host shares this machine's 2 cores with the load generator, and an unpaced one (--rate 0)
spends them on requests as fast as they come, four times over for 4 hosts, which then times
the load, not the fleet. Prints JSON: seconds per fleet deploy, hosts_in_parallel, requests
and failed requests per host, the load average, and where the time went: each progress line
of the deploy with the second it was printed at, and a breakdown (CLI start + probe +
archive, ship, each host's own deploy, recording the release). Needs root. Traffic goes only
to the namespaces' addresses. The CLI runs from a copy of src/headway taken at the start
(PYTHONPATH): a host refuses a control machine whose Headway differs from its own by one
byte, and other work in the same checkout would otherwise change it between `servers setup`
and the deploys."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, machine
from tests.load import Load
from tests.test_fleet import Lab, close_ssh, stop_hosts, warm_uv_cache


def timed_deploy(app, hosts, version: str,  # type: ignore[no-untyped-def]
                 rate: float) -> dict[str, object]:
    app.set_version(version)
    loads = [Load(h.url, threads=2, rate=rate or None) for h in hosts]
    for load in loads:
        load.__enter__()
    started, cpu = time.monotonic(), _cpu_ticks()
    lines: list[tuple[float, str]] = []
    try:
        deploy = app.popen("deploy")
        assert deploy.stdout is not None
        for line in deploy.stdout:
            lines.append((round(time.monotonic() - started, 2), line.rstrip()))
        deploy.wait(timeout=60)
    finally:
        seconds = time.monotonic() - started
        busy, total = (after - before for after, before in zip(_cpu_ticks(), cpu, strict=True))
        time.sleep(0.5)
        for load in loads:
            load.__exit__(None, None, None)
    return {"seconds": round(seconds, 2), "exit_code": deploy.returncode,
            # the whole machine (every test host, the control CLI, the load) while it ran
            "cpu_seconds": round(busy / os.sysconf("SC_CLK_TCK"), 1),
            "cpu_busy_share": round(busy / total, 2) if total else None,
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "breakdown": breakdown(lines, [h.address for h in hosts], seconds), "lines": lines,
            "requests": sum(load.total for load in loads),
            "failed": sum(load.failed for load in loads),
            "per_host": {h.address: {"requests": load.total, "failed": load.failed}
                         for h, load in zip(hosts, loads, strict=True)}}


def _cpu_ticks() -> tuple[int, int]:
    """(busy, all) clock ticks of every CPU since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


def breakdown(lines: list[tuple[float, str]], hosts: list[str],
              total: float) -> dict[str, object]:
    """Seconds until the archive was made (probe of every host + archive), until every host
    had it (ship), each host's own deploy (from 'deploying' to its last line), and the rest."""
    summary = next((n for n, (_, line) in enumerate(lines) if "host(s)" in line
                    and "release archive" not in line), len(lines))
    lines = lines[:summary]  # the closing summary names every host again

    def first(word: str) -> float | None:
        return next((t for t, line in lines if word in line), None)

    def last(word: str) -> float | None:
        return next((t for t, line in reversed(lines) if word in line), None)

    archive, shipped = first("release archive"), last("secrets set")
    per_host = {}
    for host in hosts:
        began, ended = first(f"{host}: deploying"), last(f"{host}: ")
        if began is not None and ended is not None:
            per_host[host] = {"from_s": began, "deploy_s": round(ended - began, 2)}
    ends = [v["from_s"] + v["deploy_s"] for v in per_host.values()]
    return {"probe_and_archive_s": archive,
            "ship_s": round(shipped - archive, 2) if shipped and archive else None,
            "hosts": per_host, "after_last_host_s": round(total - max(ends), 2) if ends else None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", default="1,2,4", help="fleet sizes to time")
    parser.add_argument("--parallel", type=int, default=2, help="[deploy] hosts_in_parallel "
                        "for fleets of more than one host")
    parser.add_argument("--rate", type=float, default=50, help="requests a second per host "
                        "during the timed deploys (0: unpaced)")
    args = parser.parse_args()
    sizes = [int(n) for n in args.hosts.split(",")]
    frozen = Path(tempfile.mkdtemp(prefix="headway-bench-src-"))
    shutil.copytree(ROOT / "src" / "headway", frozen / "headway",
                    ignore=shutil.ignore_patterns("__pycache__"))
    os.environ["PYTHONPATH"] = f"{frozen}:{os.environ.get('PYTHONPATH', '')}".rstrip(":")
    warm_uv_cache()
    lab = Lab.make(Path(tempfile.mkdtemp(prefix="headway-bench-fleet-")), max(sizes))
    app = lab.app("hello")
    results: list[dict[str, object]] = []
    try:
        started = time.monotonic()
        app.run("servers", "trust")
        app.run("servers", "setup", timeout=1800)
        setup = round(time.monotonic() - started, 1)
        for size in sizes:
            hosts = lab.hosts[:size]
            parallel = 1 if size == 1 else args.parallel
            toml = app.dir / "headway.toml"
            text = toml.read_text()
            servers = ", ".join(f'"root@{h.address}"' for h in hosts)
            text = text[:text.index("[servers]")] + f"[servers]\nweb = [{servers}]\n" + \
                text[text.index("[ssh]"):]
            toml.write_text(text)
            app.set_parallel(parallel)
            app.set_version(f"warm-{size}")
            app.run("deploy", timeout=1800)  # every host live before the timed one
            run = timed_deploy(app, hosts, f"timed-{size}", args.rate)
            results.append({"hosts": size, "hosts_in_parallel": parallel, **run})
            print(json.dumps(results[-1]), flush=True)
    finally:
        close_ssh(lab, app)
        stop_hosts(lab)
        lab.remove()
        shutil.rmtree(frozen, ignore_errors=True)
    one = next((r["seconds"] for r in results if r["hosts"] == 1), None)
    report = {"machine": machine(), "rate_per_host": args.rate,
              "load_average_at_end": [round(x, 2) for x in os.getloadavg()], "setup_seconds": setup,
              "runs": results,
              "ratio_to_one_host": {str(r["hosts"]): round(float(r["seconds"]) / float(one), 2)
                                    for r in results} if one else None}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
