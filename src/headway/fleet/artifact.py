"""What the control machine ships to fleet hosts, built once per deploy: the release archive
(the app's snapshot, as a local deploy takes it, plus a headway.toml for the host) and the
wheel bundle that installs this very Headway on a host. Both are named by their sha256, which
the host checks on arrival. Never includes Headway's home, the store or a secret."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import os
import shutil
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import tomli_w

import headway
from headway.errors import ConfigError
from headway.fleet.remote import build_id, version
from headway.runner import run
from headway.runtime.artifact import snapshot_files

HOST_ONLY = ("servers", "ssh")  # the host deploys locally: no [servers] in its headway.toml


def host_config(config: Path) -> bytes:
    """headway.toml as a host deploys it: [servers] and [ssh] left out (it deploys to itself),
    the app in the archive's `app/` folder."""
    data = tomllib.loads(config.read_text())
    for key in HOST_ONLY:
        data.pop(key, None)
    data.setdefault("app", {})["path"] = "app"
    return tomli_w.dumps(data).encode()


def release_archive(config: Path, source: Path, home: Path, out: Path) -> tuple[Path, str]:
    """A reproducible .tar.gz of the snapshot (same files, same bytes, same sha256: a second
    deploy of unchanged code is recognised on every host) in `out`; (path, sha256)."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "headway.toml", host_config(config), 0o644)
        for rel in snapshot_files(source, home):
            path = source / rel
            _add(tar, f"app/{rel}", path.read_bytes(), path.stat().st_mode & 0o777)
    data = buf.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{sha}.tar.gz"
    target.write_bytes(data)
    return target, sha


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    tar.addfile(info, io.BytesIO(data))


def wheel_bundle() -> tuple[Path, str]:
    """A .tar.gz of wheels: this Headway's own (its modules as they are here) and those of its
    pinned dependencies and uv (fetched once per set of pins, kept in the user's cache);
    (path, sha256)."""
    where = _cache() / "wheels"
    deps = _dependency_wheels(where)
    bundle = where / f"headway-{version()}-{build_id()}.tar.gz"
    if not bundle.exists():
        with tempfile.TemporaryDirectory(prefix="headway-wheels-") as tmp:
            own = own_wheel(Path(tmp))
            part = bundle.with_name(bundle.name + ".part")
            with tarfile.open(part, "w:gz", compresslevel=1) as tar:
                for wheel in [own, *sorted(deps.iterdir())]:
                    tar.add(wheel, arcname=wheel.name)
            part.replace(bundle)
        for old in where.glob("headway-*.tar.gz"):
            if old != bundle:
                old.unlink(missing_ok=True)
    return bundle, hashlib.sha256(bundle.read_bytes()).hexdigest()


def _cache() -> Path:
    """Wheels are the same for every home of this machine: kept in the user's cache."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "headway"


def _requirements() -> list[str]:
    requires = metadata.requires("headway") or []
    pins = [r.split(";")[0].strip() for r in requires if "extra ==" not in r]
    uv = next((r.split(";")[0].strip() for r in requires if r.startswith("uv")), "uv")
    return [*pins, uv]


def _dependency_wheels(where: Path) -> Path:
    pins = _requirements()
    folder = where / ("deps-" + hashlib.sha256("\n".join(pins).encode()).hexdigest()[:16])
    if not folder.is_dir():
        part = folder.with_name(folder.name + ".part")
        shutil.rmtree(part, ignore_errors=True)
        run([sys.executable, "-m", "pip", "--disable-pip-version-check", "wheel", "--quiet",
             "-w", str(part), *pins], what="fetching the wheels of Headway's dependencies",
            error=ConfigError, timeout=1800)
        part.replace(folder)
    return folder


def own_wheel(out: Path) -> Path:
    """This Headway as a wheel, made from its installed modules and metadata (a checkout
    installed in editable mode included), so a host runs exactly the code this machine runs."""
    package = Path(headway.__file__).parent
    dist = metadata.distribution("headway")
    name, ver = "headway", dist.version
    info = f"{name}-{ver}.dist-info"
    files: dict[str, bytes] = {}
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package)
        if all((package / parent / "__init__.py").exists() for parent in rel.parents):
            files[f"headway/{rel}"] = path.read_bytes()
    meta = dist.read_text("METADATA") or dist.read_text("PKG-INFO")  # egg-info: PKG-INFO
    if not meta:
        raise ConfigError("this Headway's package metadata is missing, so its wheel cannot be "
                          "made to install on the hosts", hint="reinstall Headway (pip install)")
    files[f"{info}/METADATA"] = meta.encode()
    files[f"{info}/entry_points.txt"] = (dist.read_text("entry_points.txt") or "").encode()
    files[f"{info}/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: headway\nRoot-Is-Purelib: true\n"
                              b"Tag: py3-none-any\n")
    record = [f"{path},sha256={_b64(hashlib.sha256(data).digest())},{len(data)}"
              for path, data in files.items()]
    files[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    wheel = out / f"{name}-{ver}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in files.items():
            zf.writestr(zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return wheel


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
