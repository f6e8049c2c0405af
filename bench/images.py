"""Images, for the bundled Python example and the Node (Express) one: the size of Headway's
generated image against a naive single-stage `FROM <same base>` + `COPY . .` + install
Containerfile built in the same run, the cold build time (no layer cache), and the rebuild
time of `headway build` after a code-only change (target < 5 s). Base images are the
stand-ins of tests/images.py. Prints JSON."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from bench.common import ROOT, machine
from headway.builder.containerfile import base_image
from headway.builder.detect import detect
from tests import images

NAIVE = {
    "python": "FROM {base}\nWORKDIR /app\nCOPY . .\n"
              "RUN python -m venv /venv && /venv/bin/pip install -r requirements.txt\n"
              'CMD ["/venv/bin/python", "app.py"]\n',
    "node": 'FROM {base}\nWORKDIR /app\nCOPY . .\nRUN npm install\nCMD ["node", "server.js"]\n',
}


def size(name: str) -> int:
    return int(subprocess.run(["podman", "image", "inspect", "--format", "{{.Size}}", name],
                              capture_output=True, text=True, check=True).stdout)


def headway_build(folder: Path, env: dict[str, str], *extra: str) -> float:
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "headway", "build", *extra], cwd=folder, env=env,
                   check=True, capture_output=True)
    return time.monotonic() - t0


def one(example: str, tmp: Path) -> dict[str, object]:
    folder = tmp / example
    shutil.copytree(ROOT / "examples" / example, folder)
    found = detect(folder)
    env = {"HEADWAY_HOME": str(tmp / "home"), "PATH": "/usr/bin:/bin:/usr/sbin"}
    name = tomllib.loads((folder / "headway.toml").read_text())["app"]["name"]
    generated = f"localhost/headway/{name}:latest"
    tags = subprocess.run(["podman", "images", "-q", f"localhost/headway/{name}"],
                          capture_output=True, text=True, check=False).stdout.split()
    subprocess.run(["podman", "rmi", "-f", *tags], capture_output=True, check=False)
    subprocess.run(["podman", "image", "prune", "-f"], capture_output=True, check=False)
    cold = headway_build(folder, env)  # no layer of it is cached any more
    (folder / "VERSION").write_text("v2\n")
    rebuild = headway_build(folder, env)
    naive_dir = tmp / f"{example}-naive"
    shutil.copytree(ROOT / "examples" / example, naive_dir)
    (naive_dir / "Containerfile").write_text(
        NAIVE[found.language].format(base=base_image(found)))
    t0 = time.monotonic()
    subprocess.run(["podman", "build", "--no-cache", "-q", "-t", f"naive-{example}",
                    str(naive_dir)], check=True, capture_output=True)
    naive_s = time.monotonic() - t0
    result = {"base_bytes": size(base_image(found)), "generated_bytes": size(generated),
              "naive_bytes": size(f"naive-{example}"), "cold_build_s": cold,
              "naive_build_s": naive_s, "rebuild_after_code_change_s": rebuild}
    result["generated_added_bytes"] = result["generated_bytes"] - result["base_bytes"]
    result["naive_added_bytes"] = result["naive_bytes"] - result["base_bytes"]
    subprocess.run(["podman", "rmi", "-f", f"naive-{example}"], capture_output=True, check=False)
    return result


def main() -> None:
    images.ensure()
    tmp = Path(tempfile.mkdtemp(prefix="headway-bench-images-"))
    try:
        results = {example: one(example, tmp) for example in ("hello", "node-hello")}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps({"benchmark": "images", **results,
                      "note": "cold = no image layers cached (the package managers' cache "
                              "mounts may be warm); rebuild = `headway build` (CLI start "
                              "included) after changing VERSION only; base images are "
                              "debootstrap stand-ins for the official ones",
                      "machine": machine()}, indent=2))


if __name__ == "__main__":
    main()
