"""A Docker daemon of our own (Debian's docker.io), for tests/test_docker.py and
bench/zero_downtime.py: its own socket, exec root, bridge (NAT to the outside, for builds that
install packages) and data root, never the machine's daemon. The data root is kept in /var/tmp
as the build cache unless another run holds it (then a scratch one, removed at the end).
Needs root; never touches a daemon it did not start."""

from __future__ import annotations

import fcntl
import ipaddress
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests import images

DOCKER = "/usr/bin/docker"  # Debian's client; a static one of another version is on PATH too
DOCKERD = "/usr/sbin/dockerd"
CACHE = Path("/var/tmp/headway-test-docker")


class DockerdMissing(RuntimeError):
    """docker.io is not installed."""


def client_bin(folder: Path) -> Path:
    """A folder whose `docker` is Debian's client, to put first on PATH."""
    bin_dir = folder / "docker-client"
    bin_dir.mkdir(exist_ok=True)
    if not (bin_dir / "docker").exists():
        (bin_dir / "docker").symlink_to(DOCKER)
    return bin_dir


def free_subnet() -> ipaddress.IPv4Network:
    used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True,
                          check=True).stdout
    for n in range(256):
        net = ipaddress.IPv4Network(f"172.29.{n}.0/24")
        if f" 172.29.{n}." not in used:
            return net
    raise RuntimeError("no free 172.29.x.0/24 for the own daemon's bridge")


@contextmanager
def own_dockerd() -> Iterator[str]:
    """Start the daemon, wait until it answers, load the python stand-in image; set DOCKER_HOST
    and Debian's client first on PATH while inside; yield the daemon's address. On leaving:
    its containers removed, the daemon stopped, the bridge and its NAT rule deleted."""
    if not Path(DOCKERD).exists() or not Path(DOCKER).exists():
        raise DockerdMissing("docker.io is not installed: run scripts/setup.sh")
    CACHE.mkdir(parents=True, exist_ok=True)
    lock = open(CACHE / "lock", "w")  # noqa: SIM115 - held while the daemon runs
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        data, scratch = CACHE / "data", None
    except BlockingIOError:
        scratch = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="headway-dockerd-"))
        data = scratch
    run = Path(tempfile.mkdtemp(prefix="hwd-"))
    bridge, net = f"hwd{os.getpid() % 10**6}", free_subnet()
    gateway = f"{net.network_address + 1}/{net.prefixlen}"
    masq = ["POSTROUTING", "-s", str(net), "!", "-o", bridge, "-j", "MASQUERADE"]
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    subprocess.run(["ip", "addr", "add", gateway, "dev", bridge], check=True)
    subprocess.run(["ip", "link", "set", bridge, "up"], check=True)
    subprocess.run(["iptables", "-t", "nat", "-A", *masq], check=True)
    host = f"unix://{run}/docker.sock"
    log = open(run / "dockerd.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [DOCKERD, "--data-root", str(data), "--exec-root", str(run / "exec"),
         "-H", host, "--pidfile", str(run / "docker.pid"), "--bridge", bridge,
         "--iptables=false", "--ip6tables=false", "--ip-masq=false", "--shutdown-timeout", "2"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env=dict(os.environ, PATH=f"{os.environ['PATH']}:/usr/sbin:/usr/bin"))
    saved = {k: os.environ.get(k) for k in ("DOCKER_HOST", "PATH")}
    try:
        os.environ["DOCKER_HOST"] = host
        os.environ["PATH"] = f"{client_bin(run)}:{os.environ['PATH']}"
        _wait_answering(proc, 60)
        images.ensure_docker([DOCKER])
        yield host
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
        leftovers = subprocess.run([DOCKER, "--host", host, "ps", "-aq"], capture_output=True,
                                   text=True, check=False).stdout.split()
        if leftovers:
            subprocess.run([DOCKER, "--host", host, "rm", "-f", *leftovers],
                           capture_output=True, check=False)
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        subprocess.run(["iptables", "-t", "nat", "-D", *masq], check=False)
        subprocess.run(["ip", "link", "del", bridge], check=False)
        shutil.rmtree(run, ignore_errors=True)
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        lock.close()


def _wait_answering(proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while subprocess.run([DOCKER, "version"], capture_output=True, check=False).returncode:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("dockerd did not answer within "
                               f"{timeout:.0f} s (exit code {proc.poll()})")
        time.sleep(0.2)
