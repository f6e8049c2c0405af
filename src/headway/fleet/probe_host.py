"""Sent over ssh to a host's system python3 (stdin, `python3 - [APP ENV]`): prints one JSON
line of what Headway needs there (OS, Python, HAProxy, podman, sudo, apt-get, $HEADWAY_HOME,
the Headway installed for Headway's use) and of the app's live release. Changes nothing.
Standard library only: it runs before Headway is installed."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

SBIN = os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin:/usr/local/sbin"


def home() -> Path:
    # as headway.store.home_dir()
    if os.environ.get("HEADWAY_HOME"):
        return Path(os.environ["HEADWAY_HOME"]).expanduser().resolve()
    base = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))
    return base / "headway" / socket.gethostname()


def first_line(argv: list[str]) -> str | None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (proc.stdout or proc.stderr).strip().splitlines()
    return lines[0] if proc.returncode == 0 and lines else None


def os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return sys.platform


def tool(name: str, *args: str) -> str | None:
    found = shutil.which(name, path=SBIN)
    return first_line([found, *args]) if found else None


def privilege() -> str | None:
    if os.geteuid() == 0:
        return "root"
    if not shutil.which("sudo"):
        return None
    try:
        ok = subprocess.run(["sudo", "-n", "true"], capture_output=True, timeout=10,
                            check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return "sudo" if ok else None


def headway(where: Path, args: list[str]) -> dict[str, Any] | None:
    python = where / "fleet" / "venv" / "bin" / "python"
    if not python.exists():
        return None
    line = first_line([str(python), "-m", "headway.fleet.remote", "info", *args])
    try:
        return json.loads(line) if line else {"broken": True}
    except ValueError:
        return {"broken": True}


def main() -> None:
    where = home()
    venv_ok = first_line([sys.executable, "-c", "import ensurepip, venv; print('ok')"])
    print(json.dumps({
        "os": os_name(), "python": sys.version.split()[0],
        "python_venv": venv_ok == "ok", "haproxy": tool("haproxy", "-v"),
        "podman": tool("podman", "--version"), "apt": bool(shutil.which("apt-get")),
        "privilege": privilege(),
        "home": str(where), "headway": headway(where, sys.argv[1:]),
    }))


main()
