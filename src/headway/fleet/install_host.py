"""Sent over ssh to a host's system python3 (stdin, `python3 - BUNDLE SHA256 VERSION`):
checks the shipped wheel bundle against its sha256, and installs that Headway (and uv) into
$HEADWAY_HOME/fleet/venv from the bundle alone: with the bundle's own uv when it runs here
(seconds), else with pip; pip falls back to the package index only when the bundle's wheels
do not fit this host. Standard library only: it runs before Headway is installed."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path


def run(argv: list[str]) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-10:])
        raise SystemExit(f"{' '.join(argv[:3])} failed:\n{tail}")
    return proc.stdout


def bundled_uv(wheels: Path) -> str | None:
    """uv's binary out of its wheel in the bundle, if it runs on this host."""
    for wheel in wheels.glob("uv-*.whl"):
        with zipfile.ZipFile(wheel) as zf:
            member = next((n for n in zf.namelist() if n.endswith(".data/scripts/uv")), None)
            if member is None:
                return None
            target = wheels / "uv-bin"
            target.write_bytes(zf.read(member))
            target.chmod(0o755)
        try:
            ok = subprocess.run([str(target), "--version"], capture_output=True,
                                check=False, timeout=30).returncode == 0
        except OSError:
            ok = False
        return str(target) if ok else None
    return None


def install(wheels: Path, new: Path, version: str) -> str:
    wanted = [f"headway=={version}", *(["uv"] if any(wheels.glob("uv-*.whl")) else [])]
    uv = bundled_uv(wheels)
    if uv:
        run([uv, "venv", "--quiet", "--python", sys.executable, str(new)])
        run([uv, "pip", "install", "--quiet", "--offline", "--no-index", "--find-links",
             str(wheels), "--python", str(new / "bin" / "python"), *wanted])
        return "from the shipped wheels, with uv"
    run([sys.executable, "-m", "venv", str(new)])
    pip = [str(new / "bin" / "python"), "-m", "pip", "install", "--quiet",
           "--disable-pip-version-check"]
    try:
        run([*pip, "--no-index", "--find-links", str(wheels), *wanted])
        return "from the shipped wheels, with pip"
    except SystemExit:  # wheels built for another platform or Python: the index then
        run([*pip, "--find-links", str(wheels), *wanted])
        return "from the shipped wheels and the package index"


def main() -> None:
    bundle, sha, version = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    if hashlib.sha256(bundle.read_bytes()).hexdigest() != sha:
        bundle.unlink()
        raise SystemExit(f"{bundle}: checksum mismatch: damaged in transit, removed")
    base = bundle.parent
    # scripts name their interpreter by path: the venv is made where it stays, and `venv`
    # (a link) moves to it in one step
    target = base / f"venv-{sha[:12]}"
    shutil.rmtree(target, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        with tarfile.open(bundle) as tar:
            tar.extractall(tmp, filter="data")
        how = install(Path(tmp), target, version)
    link, tmp_link = base / "venv", base / "venv.link"
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)
    tmp_link.unlink(missing_ok=True)
    tmp_link.symlink_to(target.name)
    os.replace(tmp_link, link)
    for old in base.glob("venv-*"):
        if old != target:
            shutil.rmtree(old, ignore_errors=True)
    bundle.unlink()
    print(json.dumps({"installed": version, "how": how}))


main()
