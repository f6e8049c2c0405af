"""Stand-ins for the official base images, which cannot be pulled here: a Debian root made by
debootstrap, given the official name (docker.io/library/python:3.11-slim, node:20-slim) so a
generated Containerfile builds unchanged. Made once per machine (podman's own storage is the
cache; the root folders are kept in /var/tmp), about 45 s each. They carry this machine's CA
bundle, since its network reaches PyPI and npm through a TLS-inspecting proxy; never
committed, never pushed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

CACHE = Path("/var/tmp/headway-test-images")
CA = "/etc/ssl/certs/ca-certificates.crt"
PYTHON = "docker.io/library/python:3.11-slim"
NODE = "docker.io/library/node:20-slim"


def ensure() -> None:
    if not _have(PYTHON):
        root = _debootstrap("python", "python3,python3-venv,ca-certificates")
        (root / "usr/local/bin/python").unlink(missing_ok=True)
        (root / "usr/local/bin/python").symlink_to("/usr/bin/python3")
        _import(root, PYTHON, [])
    if not _have(NODE):
        root = _debootstrap("node", "ca-certificates,libstdc++6")
        shutil.copy2("/usr/bin/node", root / "usr/local/bin/node")
        shutil.copytree("/usr/lib/node_modules/npm", root / "usr/local/lib/node_modules/npm",
                        symlinks=True, dirs_exist_ok=True)
        (root / "usr/local/bin/npm").unlink(missing_ok=True)
        (root / "usr/local/bin/npm").symlink_to("../lib/node_modules/npm/bin/npm-cli.js")
        subprocess.run(["chroot", str(root), "useradd", "--uid", "1000", "--create-home",
                        "node"], check=True, capture_output=True)
        _import(root, NODE, ["ENV NODE_EXTRA_CA_CERTS=" + CA])


def _have(name: str) -> bool:
    return subprocess.run(["podman", "image", "exists", name], check=False).returncode == 0


def _debootstrap(name: str, include: str) -> Path:
    root = CACHE / name
    if not (root / "etc/debian_version").exists():
        shutil.rmtree(root, ignore_errors=True)
        root.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["debootstrap", "--variant=minbase", f"--include={include}", "bookworm",
                        str(root)], check=True, capture_output=True)
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (root / junk).glob("*"):
                if path.is_file():
                    path.unlink()
    shutil.copyfile(CA, root / "etc/ssl/certs/ca-certificates.crt")
    return root


def _import(root: Path, name: str, changes: list[str]) -> None:
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    argv = ["podman", "import", "-q"]
    for change in changes:
        argv += ["--change", change]
    subprocess.run([*argv, "-", name], stdin=tar.stdout, check=True, capture_output=True)
    tar.wait()
