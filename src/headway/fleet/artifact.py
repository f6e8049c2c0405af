"""What the control machine ships to fleet hosts, built once per deploy: the release archive
(the app's snapshot, as a local deploy takes it, plus a headway.toml for the host) and the
wheel bundle that installs this very Headway on a host. Both are named by their sha256, which
the host checks on arrival. Never includes Headway's home, the store or a secret."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import shutil
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
from headway.runtime.artifact import snapshot_files

FLEET_FILE = "fleet.json"  # what the control machine adds for the host: the image by digest
HOST_ONLY = ("servers", "ssh")  # the host deploys locally: no [servers] in its headway.toml


def host_config(config: Path) -> bytes:
    """headway.toml as a host deploys it: [servers], [env.NAME.servers] and [ssh] left out (it
    deploys to itself), the app in the archive's `app/` folder."""
    data = tomllib.loads(config.read_text())
    for key in HOST_ONLY:
        data.pop(key, None)
    for table in data.get("env", {}).values():  # [env.NAME.servers] too
        if isinstance(table, dict):
            table.pop("servers", None)
    data.setdefault("app", {})["path"] = "app"
    return tomli_w.dumps(data).encode()


def release_archive(config: Path, source: Path, home: Path, out: Path, *,
                    image: str | None = None) -> tuple[Path, str]:
    """A reproducible .tar.gz of the snapshot (same files, same bytes, same sha256: a second
    deploy of unchanged code is recognised on every host) in `out`; (path, sha256). `image`:
    the digest reference a container release runs, recorded in it as fleet.json."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "headway.toml", host_config(config), 0o644)
        if image:
            _add(tar, FLEET_FILE, json.dumps({"image": image}).encode(), 0o644)
        for rel in snapshot_files(source, home):
            path = source / rel
            _add(tar, f"app/{rel}", path.read_bytes(), path.stat().st_mode & 0o777)
    data = buf.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{sha}.tar.gz"
    target.write_bytes(data)
    return target, sha


def archive_image(archive: Path) -> str | None:
    """The image digest reference a release archive records (None: a process release)."""
    with tarfile.open(archive) as tar:
        try:
            member = tar.extractfile(FLEET_FILE)
        except KeyError:
            return None
        found: str | None = json.loads(member.read()).get("image") if member else None
        return found


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    tar.addfile(info, io.BytesIO(data))


def wheel_bundle() -> tuple[Path, str]:
    """A tar of wheels: this Headway's own (its modules as they are here) and those of its
    pinned dependencies and uv (fetched once per set of pins, kept in the user's cache);
    (path, sha256)."""
    where = _cache() / "wheels"
    deps = _dependency_wheels(where)
    bundle = where / f"headway-{version()}-{build_id()}.tar"
    if not bundle.exists():
        with tempfile.TemporaryDirectory(prefix="headway-wheels-") as tmp:
            own = own_wheel(Path(tmp))
            part = bundle.with_name(bundle.name + ".part")
            with tarfile.open(part, "w") as tar:  # wheels are compressed already
                for wheel in [own, *sorted(deps.iterdir())]:
                    tar.add(wheel, arcname=wheel.name)
            part.replace(bundle)
        for old in where.glob("headway-*.tar"):
            if old != bundle:
                old.unlink(missing_ok=True)
    return bundle, hashlib.sha256(bundle.read_bytes()).hexdigest()


def _cache() -> Path:
    """Wheels are the same for every home of this machine: kept in the user's cache."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "headway"


def requirements() -> list[str]:
    """Headway's own requirements: from pyproject.toml when this is a checkout installed in
    editable mode (its installed metadata is as old as that install), else as installed."""
    package = Path(headway.__file__).parent
    pyproject = package.parent.parent / "pyproject.toml"
    if pyproject.is_file() and package.parent.name != "site-packages":
        found: list[str] = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
        return found
    return [r for r in metadata.requires("headway") or [] if "extra ==" not in r]


def _closure() -> list[metadata.Distribution]:
    """The installed distributions Headway needs here (its requirements, theirs, and uv),
    each once; the extras no one asked for are left out."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    todo = [Requirement(r) for r in requirements()]
    todo.append(Requirement("uv"))
    found: dict[str, metadata.Distribution] = {}
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(req.name)
        if name in found or name == "headway":
            continue
        try:
            found[name] = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            if name == "uv":  # only speeds the hosts' installs up: pip does without it
                continue
            raise ConfigError(f"{req.name} (which Headway needs) is not installed here, so it "
                              "cannot be shipped to the hosts",
                              hint="reinstall Headway (pip install headway)") from None
        todo += [Requirement(r) for r in found[name].requires or []]
    return [found[n] for n in sorted(found)]


def _dependency_wheels(where: Path) -> Path:
    """Wheels of the distributions installed here, made back from their installed files: a
    host gets exactly the versions this machine runs, without a package index."""
    dists = _closure()
    key = "\n".join(f"{d.metadata['Name']}=={d.version}" for d in dists)
    folder = where / ("deps-" + hashlib.sha256(key.encode()).hexdigest()[:16])
    if not folder.is_dir():
        part = folder.with_name(folder.name + ".part")
        shutil.rmtree(part, ignore_errors=True)
        part.mkdir(parents=True)
        for dist in dists:
            installed_wheel(dist, part)
        part.replace(folder)
    return folder


def installed_wheel(dist: metadata.Distribution, out: Path) -> Path:
    """A wheel of an installed distribution, from the files its RECORD lists: its modules and
    data as installed, its own WHEEL tags; scripts that the installer generated from entry
    points are left out (the host's installer makes its own)."""
    name, ver = dist.metadata["Name"].replace("-", "_"), dist.version
    info = next((str(f).split("/")[0] for f in dist.files or []
                 if str(f).endswith(".dist-info/RECORD")), None)
    if info is None:
        raise ConfigError(f"{name} {ver} is installed without a RECORD, so it cannot be "
                          "shipped to the hosts", hint=f"reinstall it: pip install {name}=={ver}")
    generated = {e.name for e in dist.entry_points if e.group in ("console_scripts",
                                                                  "gui_scripts")}
    skip = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
    files: dict[str, bytes] = {}
    for rel in dist.files or []:
        path, text = Path(str(dist.locate_file(rel))), str(rel)
        if text.endswith(".pyc") or (text.startswith(f"{info}/") and path.name in skip):
            continue
        if text.startswith("../"):
            if "/bin/" not in f"/{text}" or path.name in generated:
                continue
            text = f"{name}-{ver}.data/scripts/{path.name}"
        if path.is_file():
            files[text] = path.read_bytes()
    wheel_file = dist.read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip() for line in wheel_file.splitlines()
            if line.startswith("Tag:")] or ["py3-none-any"]
    parts = [sorted({tag.split("-")[n] for tag in tags}) for n in range(3)]  # py2.py3-none-any
    return _write_wheel(out, name, ver, info, files, "-".join(".".join(p) for p in parts),
                        wheel_file=wheel_file)


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
    files[f"{info}/METADATA"] = "".join(
        [f"Metadata-Version: 2.1\nName: {name}\nVersion: {ver}\nRequires-Python: >=3.11\n",
         *[f"Requires-Dist: {r}\n" for r in requirements()]]).encode()
    files[f"{info}/entry_points.txt"] = (dist.read_text("entry_points.txt") or "").encode()
    return _write_wheel(out, name, ver, info, files, "py3-none-any", wheel_file=(
        "Wheel-Version: 1.0\nGenerator: headway\nRoot-Is-Purelib: true\nTag: py3-none-any\n"))


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _write_wheel(out: Path, name: str, ver: str, info: str, files: dict[str, bytes], tag: str,
                 *, wheel_file: str) -> Path:
    files = {**files, f"{info}/WHEEL": wheel_file.encode()}
    record = [f"{path},sha256={_b64(hashlib.sha256(data).digest())},{len(data)}"
              for path, data in files.items()]
    files[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    wheel = out / f"{name}-{ver}-{tag}.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            entry = zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0))
            entry.external_attr = (0o755 if "/scripts/" in path else 0o644) << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(entry, data, compresslevel=1)
    return wheel
