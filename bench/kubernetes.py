"""Manifest generation time over the corpus (tests/corpus/*): each app copied and `headway
init`ed (not timed), then its kustomize files (base + production overlay) and its Helm chart
generated in process, `--repeat` times each; per app the median milliseconds, the objects
made and the files written, and the time of one whole `headway generate kubernetes` run as a
subprocess (CLI start-up included). Also how long `kubectl kustomize` takes to render the
overlay, when kubectl is installed. Talks to no cluster. Prints JSON.

    python -m bench.kubernetes [--app NAME ...] [--repeat 20] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from bench.common import machine
from headway.cli.main import cli
from headway.kube import helm, kustomize, source
from headway.spec.load import load_spec

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "corpus"


def _median_ms(run: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 2)


def measure(name: str, work: Path, repeat: int) -> dict[str, Any]:
    copy = work / name
    shutil.copytree(CORPUS / name, copy)
    init = CliRunner().invoke(cli, ["init", "--path", str(copy)])
    if init.exit_code != 0:
        return {"app": name, "error": f"init: {init.output.strip()[-300:]}"}
    spec = load_spec(copy / "headway.toml")
    envs = source.environments(spec, ["production"], None)
    names, optional = source.secret_names(spec, ["production"], None)
    files = kustomize.files(spec, envs, secret_names=names, optional=optional)
    chart = helm.chart(spec, envs, secret_names=names, optional=optional, version="0.1.0")
    out: dict[str, Any] = {
        "app": name,
        "objects": sum(1 for f, t in files.items() if f.startswith("base/")
                       and not f.endswith("kustomization.yaml")
                       for o in yaml.safe_load_all(t) if o),
        "kustomize_files": len(files), "chart_files": len(chart),
        "kustomize_ms": _median_ms(lambda: kustomize.files(
            spec, envs, secret_names=names, optional=optional), repeat),
        "helm_ms": _median_ms(lambda: helm.chart(
            spec, envs, secret_names=names, optional=optional, version="0.1.0"), repeat)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "headway", "-c", str(copy / "headway.toml"),
                           "generate", "kubernetes", "--out", str(copy / "k8s")],
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "HEADWAY_HOME": str(work / "home")})
    out["cli_s"] = round(time.perf_counter() - started, 3)
    out["cli_ok"] = done.returncode == 0
    if shutil.which("kubectl") and done.returncode == 0:
        started = time.perf_counter()
        render = subprocess.run(["kubectl", "kustomize", str(copy / "k8s/overlays/production")],
                                capture_output=True, text=True, check=False)
        out["kubectl_kustomize_s"] = round(time.perf_counter() - started, 3)
        out["rendered_objects"] = sum(1 for o in yaml.safe_load_all(render.stdout) if o) \
            if render.returncode == 0 else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", action="append", help="corpus app (default: all)")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--out", type=Path)
    opts = parser.parse_args()
    apps = opts.app or sorted(p.name for p in CORPUS.iterdir() if p.is_dir())
    with tempfile.TemporaryDirectory(prefix="hw-bench-kube-") as tmp:
        rows = [measure(name, Path(tmp), opts.repeat) for name in apps]
    done = [r for r in rows if "error" not in r]
    result = {"bench": "kubernetes", "machine": machine(), "repeat": opts.repeat,
              "load_average": [round(x, 1) for x in os.getloadavg()],
              "apps": rows,
              "median_kustomize_ms": round(statistics.median(r["kustomize_ms"] for r in done), 1)
              if done else None,
              "median_helm_ms": round(statistics.median(r["helm_ms"] for r in done), 1) if done else None,
              "median_cli_s": round(statistics.median(r["cli_s"] for r in done), 2) if done else None}
    text = json.dumps(result, indent=2)
    if opts.out:
        opts.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
