"""`headway servers check | setup | trust`: what each host has, installing this Headway (and,
when allowed, HAProxy and python3-venv with apt-get) on it, and recording host keys. `check`
changes nothing on any host; `trust` changes only this machine's known_hosts file."""

from __future__ import annotations

import subprocess
from typing import Any

from headway.errors import ConfigError, HeadwayError
from headway.fleet import ssh
from headway.fleet.artifact import wheel_bundle
from headway.fleet.fleet import HERE, Fleet, installed_problem
from headway.fleet.hosts import Host
from headway.fleet.remote import version

PACKAGES = {"haproxy": "haproxy", "python_venv": "python3-venv"}  # probe key: Debian package


def packages(fleet: Fleet) -> dict[str, str]:
    """What a host needs for this app: podman too when the app runs on it."""
    return PACKAGES | ({"podman": "podman"} if fleet.spec.app.runtime == "podman" else {})


def check(fleet: Fleet) -> list[dict[str, Any]]:
    """One row per host: what it has, and what it lacks for a deploy ("ready")."""
    rows = []
    for name, result in fleet.each(fleet.hosts, fleet.probe).items():
        if isinstance(result, HeadwayError):
            rows.append({"host": name, "reachable": False, "ready": False,
                         "missing": result.message.split(": ", 1)[-1].splitlines()[0],
                         "hint": result.hint})
            continue
        there = result.get("headway") or {}
        missing = [pkg for key, pkg in packages(fleet).items() if not result.get(key)]
        problem = installed_problem(name, result)
        if problem:
            missing.append("headway " + version())
        rows.append({"host": name, "reachable": True, "os": result["os"],
                     "python": result["python"], "haproxy": _short(result["haproxy"]),
                     "podman": _short(result["podman"]),
                     "headway": f"{there['version']} ({there['build']})"
                     if there.get("version") else None,
                     "privilege": result["privilege"], "home": result["home"],
                     "ready": not missing, "missing": ", ".join(missing) or None,
                     "hint": problem.hint if problem else None})
    return rows


def _short(line: str | None) -> str | None:
    """'HAProxy version 2.6.12-1+deb12u1 2023/12/16 - https://…' -> '2.6.12-1+deb12u1'."""
    if not line:
        return None
    words = line.split()
    return next((w for w in words if w[:1].isdigit()), line)


def setup(fleet: Fleet, *, install_packages: bool = False) -> list[dict[str, Any]]:
    """Each host made ready: system packages (only with `install_packages`), then this
    Headway in $HEADWAY_HOME/fleet/venv when it is not already there. One row per host."""
    bundle, sha = wheel_bundle()
    fleet.progress(f"wheel bundle {bundle.name} ({bundle.stat().st_size >> 20} MiB)",
                   step="setup")

    def one(host: Host) -> dict[str, Any]:
        found = fleet.probe(host)
        done = _packages(fleet, host, found, install_packages)
        if installed_problem(host.name, found) is None:
            return {"host": host.name, "headway": f"{version()} already installed", **done}
        folder = f"{found['home']}/fleet"
        fleet.ssh(host, ["mkdir", "-p", folder], what="making its fleet folder")
        ssh.execute(fleet.conn.scp(host, bundle, f"{folder}/{bundle.name}"), host, fleet.conn,
                    what="copying Headway's wheels", timeout=1800)
        fleet.progress(f"{host.name}: installing Headway {version()}", host=host.name)
        fleet.ssh(host, ["python3", "-", f"{folder}/{bundle.name}", sha, version()],
                  stdin=(HERE / "install_host.py").read_text(), what="installing Headway",
                  timeout=1800)
        problem = installed_problem(host.name, fleet.probe(host))
        if problem:
            raise problem
        return {"host": host.name, "headway": f"{version()} installed", **done}

    rows = []
    for name, result in fleet.each(fleet.hosts, one).items():
        rows.append({"host": name, "headway": "failed", "error": result.message,
                     "hint": result.hint} if isinstance(result, HeadwayError) else result)
    return rows


def _packages(fleet: Fleet, host: Host, found: dict[str, Any],
              allowed: bool) -> dict[str, Any]:
    missing = [pkg for key, pkg in packages(fleet).items() if not found.get(key)]
    if not missing:
        return {"packages": "present"}
    if not allowed:
        raise ConfigError(f"{host.name}: lacks {', '.join(missing)}",
                          hint="install it there, or run `headway servers setup "
                          "--install-packages` (apt-get, as root or with sudo)"
                          if found.get("privilege") else "install it there as root (the login "
                          "user has neither root nor password-less sudo, which "
                          "--install-packages needs)")
    if not found.get("apt"):
        raise ConfigError(f"{host.name}: lacks {', '.join(missing)} and has no apt-get",
                          hint="install it there with the system's package manager")
    sudo = {"root": [], "sudo": ["sudo", "-n"]}.get(found.get("privilege") or "")
    if sudo is None:
        raise ConfigError(f"{host.name}: lacks {', '.join(missing)}; installing needs root "
                          "or password-less sudo, and the login user has neither",
                          hint="install it there by hand, or allow `sudo -n apt-get` for "
                          "that user")
    apt = [*sudo, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]
    fleet.ssh(host, [*apt, "update", "-q"], what="apt-get update", timeout=600)
    fleet.ssh(host, [*apt, "install", "-y", "-q", *missing], what="apt-get install",
              timeout=1800)
    return {"packages": "installed " + ", ".join(missing)}


def trust(fleet: Fleet) -> list[dict[str, Any]]:
    """Record each host's key in Headway's known_hosts (a key already recorded must match:
    a changed key is refused); one row per host with the key's fingerprint."""
    def one(host: Host) -> dict[str, Any]:
        fleet.ssh(host, ["true"], what="connecting", accept_new=True, timeout=60)
        name = host.address.strip("[]") if host.port == 22 \
            else f"[{host.address.strip('[]')}]:{host.port}"
        out = subprocess.run(["ssh-keygen", "-l", "-F", name, "-f",
                              str(fleet.conn.known_hosts)], capture_output=True, text=True,
                             check=False, timeout=30).stdout
        keys = [line.split()[-2:] for line in out.splitlines()
                if line and not line.startswith("#")]
        return {"host": host.name, "trusted": True,
                "keys": ", ".join(f"{kind.strip('()')} {fp}" for fp, kind in keys)}
    rows = []
    for name, result in fleet.each(fleet.hosts, one).items():
        rows.append({"host": name, "trusted": False, "keys": None, "error": result.message,
                     "hint": result.hint} if isinstance(result, HeadwayError) else result)
    return rows
