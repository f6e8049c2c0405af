"""One-off commands in a release's own runtime: the time a no-op release command (`true`)
adds to a podman deploy (median of 3 forced deploys with it against 3 without, alternating),
and the latency of `headway run -- true` per runtime (whole CLI command, Python start-up
included; median of 5). Prints JSON."""

from __future__ import annotations

import json
import statistics
import time

from bench.common import BenchApp, machine
from tests import images


def timed(app: BenchApp, *args: str) -> float:
    t0 = time.monotonic()
    app.headway(*args)
    return time.monotonic() - t0


def release_command_cost(app: BenchApp) -> dict[str, object]:
    toml = app.dir / "headway.toml"
    base = toml.read_text()
    times: dict[str, list[float]] = {"without": [], "with": []}
    for _ in range(3):
        for name, extra in (("without", ""), ("with", '[release]\ncommand = "true"\n')):
            toml.write_text(base + "\n" + extra)
            times[name].append(timed(app, "deploy", "--force"))
    toml.write_text(base)
    medians = {k: statistics.median(v) for k, v in times.items()}
    return {"deploy_s": times, "median_s": medians,
            "added_by_release_command_s": medians["with"] - medians["without"]}


def run_latency(app: BenchApp) -> dict[str, object]:
    times = [timed(app, "run", "--", "true") for _ in range(5)]
    return {"run_true_s": times, "median_s": statistics.median(times)}


def main() -> None:
    images.ensure()
    out: dict[str, object] = {"benchmark": "run_once", "machine": machine()}
    for port, runtime in ((18290, "podman"), (18295, "process")):
        app = BenchApp(port, replicas=1, runtime=runtime)
        try:
            app.headway("deploy")
            if runtime == "podman":
                out["podman_release_command"] = release_command_cost(app)
            out[f"{runtime}_headway_run_true"] = run_latency(app)
        finally:
            app.close()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
