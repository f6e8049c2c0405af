"""`headway ci run` wall time per stage, and `headway sbom` / `headway scan` time and
completeness, for the bundled examples on podman.

For each example (examples/hello: Python, examples/node-hello: Node): `ci run lint test build`
(lint: ruff for Python, none for Node; test: a compile or load check), a deploy, then `ci run
scan`, `headway sbom` and `headway scan` timed. The SBOM is then compared, in the same run,
with the package lists read straight from the release's image (dpkg's database, Python's
installed distributions, node_modules' package.json files): every installed package must
appear in the SBOM. Prints JSON.

    python -m bench.supply [--example hello|node-hello]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, machine

OSV = ROOT / "tests" / "fixtures" / "osv"
CI = {"hello": 'lint = "ruff check --no-cache --select E9,F ."\ntest = "python3 -m py_compile app.py"',
      "node-hello": 'lint = ""\ntest = "node -e \'require(\\"./package.json\\")\'"'}
LISTS = {  # what the image itself says is installed: name per line
    "dpkg": ["dpkg-query", "-W", "-f", "${Package}\\n"],
    "python": ["python3", "-c", ("import importlib.metadata as m; print('\\n'.join("
               "d.metadata['Name'] for d in m.distributions()))")],
    "node": ["sh", "-c", ("for f in $(find / -path /proc -prune -o -path '*/node_modules/*/"
             "package.json' -print 2>/dev/null); do sed -n 's/^  \"name\": \"\\(.*\\)\",$/\\1/p' "
             "$f | head -1; done")],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    started = time.monotonic()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n"
                         f"{done.stderr}")
    return time.monotonic() - started, done.stdout


def stages(out: str) -> dict[str, float]:
    """`ci run`'s lines: STAGE STATUS SECONDSs NOTE."""
    return {m[1]: float(m[3]) for m in re.finditer(r"^(\w+)\s+(\w+)\s+([\d.]+)s", out, re.MULTILINE)}


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def measure(example: str) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="headway-bench-supply-"))
    app = tmp / example
    shutil.copytree(ROOT / "examples" / example, app)
    shutil.copytree(OSV, app / "osv")
    toml = (app / "headway.toml").read_text()
    toml = re.sub(r"^port = \d+.*$", f'port = {free_port()}\naddress = "127.0.0.1"', toml,
                  flags=re.MULTILINE).replace('runtime = "process"', 'runtime = "podman"')
    toml += (f"\n[observe]\nmetrics_port = {free_port()}\nrouter_metrics_port = {free_port()}\n"
             f'\n[ci]\n{CI[example]}\n\n[scan]\ndb = "osv"\nfail_on = "critical"\n')
    (app / "headway.toml").write_text(toml)
    env = dict(os.environ, HEADWAY_HOME=str(tmp / "home"))
    headway = [sys.executable, "-m", "headway"]
    try:
        took, out = run([*headway, "ci", "run", "lint", "test", "build"], app, env)
        result: dict[str, object] = {"example": example,
                                     "ci_run": {"stages": stages(out), "wall_s": round(took, 2)}}
        deploy, _ = run([*headway, "deploy"], app, env)
        scan_stage, out = run([*headway, "ci", "run", "scan", "--env", "production"], app, env)
        sbom_s, _ = run([*headway, "sbom", "-o", str(tmp / "sbom.json")], app, env)
        scan_s, scan_out = run([*headway, "scan", "--json"], app, env)
        components = json.loads((tmp / "sbom.json").read_text()).get("components", [])
        in_sbom = {normal(c["name"]) for c in components}
        image = subprocess.run(["podman", "ps", "--filter", f"label=headway.home={env['HEADWAY_HOME']}",
                                "--format", "{{.Image}}"], capture_output=True, text=True,
                               check=True).stdout.split()[0]
        direct: dict[str, object] = {}
        for kind, argv in LISTS.items():
            listed = subprocess.run(["podman", "run", "--rm", "--entrypoint", argv[0], image,
                                     *argv[1:]], capture_output=True, text=True, check=False)
            names = {normal(n) for n in listed.stdout.split() if n}
            missing = sorted(names - in_sbom)
            direct[kind] = {"in_image": len(names), "missing_from_sbom": missing[:20],
                            "missing_count": len(missing)}
        result |= {"deploy_s": round(deploy, 2), "ci_scan_stage_wall_s": round(scan_stage, 2),
                   "sbom_s": round(sbom_s, 2), "scan_s": round(scan_s, 2),
                   "sbom_components": len(components),
                   "scan_findings": len(json.loads(scan_out).get("findings", [])),
                   "image_lists": direct}
        return result
    finally:
        subprocess.run([*headway, "destroy", "--yes"], cwd=app, env=env, capture_output=True,
                       check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--example", choices=["hello", "node-hello"], action="append")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests import images

    images.ensure()
    print(json.dumps({"machine": machine(), "runs": [measure(e) for e in
                                                     args.example or ["hello", "node-hello"]]},
                     indent=2))


if __name__ == "__main__":
    main()
