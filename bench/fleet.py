"""Fleet deploy time over SSH for 1, 2 and 4 test hosts (network namespaces with their own
sshd, made here as tests/test_fleet.py makes them), with load through every host's router
during each timed deploy. Prints JSON: seconds per fleet deploy, hosts_in_parallel, requests
and failed requests per host. Needs root. Traffic goes only to the namespaces' addresses."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from bench.common import machine
from tests.load import Load
from tests.test_fleet import Lab, close_ssh, stop_hosts, warm_uv_cache


def timed_deploy(app, hosts, version: str) -> dict[str, object]:  # type: ignore[no-untyped-def]
    app.set_version(version)
    loads = [Load(h.url, threads=2) for h in hosts]
    for load in loads:
        load.__enter__()
    started = time.monotonic()
    try:
        out = app.run("deploy", check=False)
    finally:
        seconds = time.monotonic() - started
        time.sleep(0.5)
        for load in loads:
            load.__exit__(None, None, None)
    return {"seconds": round(seconds, 2), "exit_code": out.returncode,
            "requests": sum(load.total for load in loads),
            "failed": sum(load.failed for load in loads),
            "per_host": {h.address: {"requests": load.total, "failed": load.failed}
                         for h, load in zip(hosts, loads, strict=True)}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", default="1,2,4", help="fleet sizes to time")
    parser.add_argument("--parallel", type=int, default=2, help="[deploy] hosts_in_parallel "
                        "for fleets of more than one host")
    args = parser.parse_args()
    sizes = [int(n) for n in args.hosts.split(",")]
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
            run = timed_deploy(app, hosts, f"timed-{size}")
            results.append({"hosts": size, "hosts_in_parallel": parallel, **run})
            print(json.dumps(results[-1]), flush=True)
    finally:
        close_ssh(lab, app)
        stop_hosts(lab)
        lab.remove()
    one = next((r["seconds"] for r in results if r["hosts"] == 1), None)
    report = {"machine": machine(), "load_average": os.getloadavg()[0], "setup_seconds": setup,
              "runs": results,
              "ratio_to_one_host": {str(r["hosts"]): round(float(r["seconds"]) / float(one), 2)
                                    for r in results} if one else None}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
