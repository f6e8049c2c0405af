"""The software bill of materials of a release: the OS packages (dpkg status), Python
distributions (dist-info METADATA) and Node packages (node_modules/*/package.json) it ships,
each with a purl, as a CycloneDX document built with cyclonedx-python-lib. A container release
is read from its image (`podman image mount`, read-only; docker: the files it needs, exported);
a process release from its folder's .venv and node_modules. Never starts a container, never changes an image, never prints."""

from __future__ import annotations

import json
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

from headway.errors import NotFound, RuntimeFailure
from headway.runner import run

IMAGE_FILE = ".headway-image"  # what runtime.container writes into a podman release's folder
PY_SITES = ("venv/lib/python3*/site-packages", "usr/local/lib/python3*/site-packages",
            "usr/lib/python3*/site-packages", "usr/lib/python3/dist-packages",
            "opt/venv/lib/python3*/site-packages")
NODE_DIRS = ("usr/local/lib/node_modules", "usr/lib/node_modules")


@dataclass(frozen=True)
class Package:
    """One installed package. ecosystem: deb | pypi | npm (the purl type)."""

    ecosystem: str
    name: str
    version: str
    purl: str
    source: str | None = None  # a deb's source package (what Debian advisories name)


def purl(ecosystem: str, name: str, version: str, *, namespace: str | None = None,
         qualifiers: dict[str, str] | None = None) -> str:
    from packageurl import PackageURL

    if ecosystem == "pypi":
        name = name.lower().replace("_", "-").replace(".", "-")
    return str(PackageURL(type=ecosystem, namespace=namespace, name=name, version=version,
                          qualifiers=qualifiers or None).to_string())


def dpkg_packages(status: str, distro: str = "debian") -> list[Package]:
    """The installed packages of a dpkg status file's text."""
    found = []
    for stanza in status.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if not fields.get("Package") or "installed" not in fields.get("Status", "").split():
            continue
        name, version, arch = fields["Package"], fields.get("Version", ""), fields.get(
            "Architecture", "")
        source = fields.get("Source", name).split(" ")[0]
        found.append(Package("deb", name, version, purl(
            "deb", name, version, namespace=distro, qualifiers={"arch": arch} if arch else None),
            source))
    return found


def python_packages(site_dirs: list[Path]) -> list[Package]:
    """Distributions installed in these site-packages folders (their dist-info METADATA)."""
    found = []
    for site in site_dirs:
        for meta in sorted(site.glob("*.dist-info/METADATA")):
            try:
                headers = HeaderParser().parsestr(meta.read_text(errors="replace"))
            except OSError:
                continue
            name, version = headers.get("Name"), headers.get("Version")
            if name and version:
                found.append(Package("pypi", name, version, purl("pypi", name, version)))
    return found


def node_packages(node_modules: list[Path]) -> list[Package]:
    """Packages in these node_modules folders, scoped ones (@scope/name) and nested ones too."""
    found = []
    for top in node_modules:
        for manifest in sorted([*top.glob("*/package.json"), *top.glob("@*/*/package.json"),
                                *top.glob("**/node_modules/*/package.json"),
                                *top.glob("**/node_modules/@*/*/package.json")]):
            try:
                data = json.loads(manifest.read_text())
            except (OSError, ValueError):
                continue
            name, version = data.get("name"), data.get("version")
            if isinstance(name, str) and isinstance(version, str):
                scope, _, bare = name.rpartition("/")
                found.append(Package("npm", name, version,
                                     purl("npm", bare, version, namespace=scope or None)))
    return sorted(set(found), key=lambda p: (p.name, p.version))


def folder_packages(root: Path, *, app_dir: Path | None = None, os_packages: bool) -> list[Package]:
    """What is installed under root: a release folder (.venv, node_modules) or an image's
    filesystem (dpkg status, system and /venv site-packages, the app's node_modules)."""
    packages: list[Package] = []
    if os_packages:
        status = root / "var/lib/dpkg/status"
        if status.exists():
            packages += dpkg_packages(status.read_text(errors="replace"), _distro(root))
    sites = [p for pattern in PY_SITES for p in sorted(root.glob(pattern))] if os_packages else []
    node = [root / d for d in NODE_DIRS] if os_packages else []
    for app in [p for p in {app_dir, root if not os_packages else None} if p is not None]:
        sites += sorted(app.glob(".venv/lib/python3*/site-packages"))
        node.append(app / "node_modules")
    packages += python_packages(sites)
    packages += node_packages([d for d in node if d.is_dir()])
    unique = {p.purl: p for p in packages}
    return list(unique.values())


def _distro(root: Path) -> str:
    try:
        for line in (root / "etc/os-release").read_text().splitlines():
            if line.startswith("ID="):
                return line[3:].strip('"') or "debian"
    except OSError:
        pass
    return "debian"


# the files folder_packages reads; docker copies only these out of an image
_READ = ("var/lib/dpkg/status", "etc/os-release", "usr/lib/os-release")


@contextmanager
def mounted(binary: str, image_id: str) -> Iterator[Path]:
    """The image's filesystem, mounted read-only for the block (root only). Docker has no
    `image mount`: what the SBOM reads is copied out of a container created (never started)
    from the image and removed after."""
    if Path(binary).name == "docker":
        with _exported(binary, image_id) as root:
            yield root
        return
    try:
        where = run([binary, "image", "mount", image_id], error=RuntimeFailure,
                    what=f"{binary} image mount").strip()
    except RuntimeFailure as exc:
        if "image not known" in exc.message or "no such image" in exc.message.lower():
            raise NotFound(f"image {image_id[:12]} of this release is gone",
                           hint="deploy again to build a new release") from None
        raise RuntimeFailure(f"could not read image {image_id[:12]}: {exc.message}",
                             hint="reading an image needs root (podman image mount)") from None
    try:
        yield Path(where)
    finally:
        subprocess.run([binary, "image", "unmount", image_id], capture_output=True, check=False)


@contextmanager
def _exported(binary: str, image_id: str) -> Iterator[Path]:
    try:
        box = run([binary, "create", image_id], error=RuntimeFailure,
                  what=f"{binary} create").strip()
    except RuntimeFailure as exc:
        if "no such image" in exc.message.lower():
            raise NotFound(f"image {image_id[:12]} of this release is gone",
                           hint="deploy again to build a new release") from None
        raise
    try:
        with tempfile.TemporaryDirectory(prefix="headway-sbom-") as tmp, \
                subprocess.Popen([binary, "export", box], stdout=subprocess.PIPE) as export:
            with tarfile.open(fileobj=export.stdout, mode="r|") as tar:
                for member in tar:
                    if (member.isfile() or member.issym()) and (member.name in _READ or
                            member.name.endswith((".dist-info/METADATA", "/package.json"))):
                        tar.extract(member, tmp, filter="data")
            yield Path(tmp)
    finally:
        subprocess.run([binary, "rm", "-f", box], capture_output=True, check=False)


def release_packages(folder: Path) -> tuple[list[Package], str]:
    """The packages of a release folder, and what was read ("image ID" or "folder PATH")."""
    if not folder.is_dir():
        raise NotFound(f"release folder {folder} is gone", hint="deploy again to build a "
                       "new release")
    image_file = folder / IMAGE_FILE
    if image_file.exists():
        built = json.loads(image_file.read_text())
        workdir = str(built.get("workdir") or "/app").lstrip("/")
        with mounted(built.get("engine", "podman"), built["id"]) as root:
            return folder_packages(root, app_dir=root / workdir, os_packages=True), \
                f"image {built['id'][:12]}"
    return folder_packages(folder, os_packages=False), f"folder {folder}"


def bom_json(packages: list[Package], app: str, version: str) -> str:
    """The CycloneDX 1.6 JSON of these packages, describing the app at this version."""
    import warnings

    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    bom = Bom()
    root = Component(name=app, version=version, type=ComponentType.APPLICATION,
                     bom_ref=f"{app}@{version}")
    bom.metadata.component = root
    for package in sorted(packages, key=lambda p: (p.ecosystem, p.name.lower(), p.version)):
        component = Component(name=package.name, version=package.version,
                              type=ComponentType.LIBRARY, purl=PackageURL.from_string(package.purl),
                              bom_ref=package.purl)
        bom.components.add(component)
        bom.register_dependency(root, [component])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return str(JsonV1Dot6(bom).output_as_string(indent=2))


def packages_of_bom(text: str) -> list[Package]:
    """The packages listed in a CycloneDX JSON (components with a purl)."""
    from packageurl import PackageURL

    found = []
    for component in json.loads(text).get("components", []):
        if "purl" in component:
            parsed = PackageURL.from_string(component["purl"])
            found.append(Package(parsed.type, component["name"], component.get("version", ""),
                                 component["purl"]))
    return found
