"""Match a release's packages against a local OSV database (a folder or zip of OSV JSON
files): affected `versions` lists and ECOSYSTEM/SEMVER `ranges` (introduced, fixed,
last_affected), compared as PyPI versions (packaging), semver (npm) or Debian versions
(python-debian, when installed). Severity comes from the advisory's
database_specific.severity, else its CVSS v3 vector's base score. Reads files only: never
calls the network, never prints."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headway.errors import ConfigError, RuntimeFailure
from headway.supply.sbom import Package

LEVELS = ("low", "moderate", "high", "critical")
OSV_ECOSYSTEM = {"PyPI": "pypi", "npm": "npm", "Debian": "deb", "Ubuntu": "deb"}


@dataclass(frozen=True)
class Finding:
    id: str
    aliases: tuple[str, ...]
    package: Package
    severity: str  # one of LEVELS, or "unknown"
    severity_from: str  # "database_specific" | "CVSS_V3 7.5" | "none"
    fixed: tuple[str, ...]
    summary: str = ""
    ignored: str | None = None  # the reason, while its `until` has not passed


@dataclass
class Result:
    findings: list[Finding] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)  # ecosystems that could not be compared
    expired: list[str] = field(default_factory=list)  # ignore entries past their `until`


# versions ---------------------------------------------------------------------------------
def _pypi_key(version: str) -> Any:
    from packaging.version import Version

    return Version(version)


_SEMVER = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+.*)?$")


def _semver_key(version: str) -> tuple[Any, ...]:
    """major, minor, patch, then a release sorts after its prereleases (semver 2.0 rules)."""
    match = _SEMVER.match(version.strip())
    if not match:
        raise ValueError(version)
    core = tuple(int(part or 0) for part in match.groups()[:3])
    pre = match.group(4)
    if pre is None:
        return (*core, 1, ())
    idents = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (*core, 0, idents)


def _debian_key() -> Callable[[str], Any] | None:
    try:
        from debian.debian_support import Version
    except ImportError:
        return None
    return Version


def version_key(ecosystem: str) -> Callable[[str], Any] | None:
    return {"pypi": _pypi_key, "npm": _semver_key}.get(ecosystem) or (
        _debian_key() if ecosystem == "deb" else None)


def _normal(ecosystem: str, name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower() if ecosystem == "pypi" else name


# the database -----------------------------------------------------------------------------
def _documents(db: Path) -> Iterator[tuple[str, bytes]]:
    if db.is_dir():
        for path in sorted(db.rglob("*.json")):
            yield str(path), path.read_bytes()
    elif zipfile.is_zipfile(db):
        with zipfile.ZipFile(db) as archive:
            for name in archive.namelist():
                if name.endswith(".json"):
                    yield f"{db}:{name}", archive.read(name)
    elif db.exists():
        raise ConfigError(f"[scan] db: {db} is neither a folder nor a zip of OSV JSON files")
    else:
        raise ConfigError(f"[scan] db: {db} does not exist",
                          hint="a folder or zip of OSV JSON files, e.g. from "
                          "https://osv-vulnerabilities.storage.googleapis.com/PyPI/all.zip")


def load_db(db: Path) -> dict[tuple[str, str], list[tuple[dict[str, Any], dict[str, Any]]]]:
    """(ecosystem, name) -> [(advisory, its affected entry)] for every advisory in db."""
    index: dict[tuple[str, str], list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for where, raw in _documents(db):
        try:
            advisory = json.loads(raw)
        except ValueError as exc:
            raise ConfigError(f"[scan] db: {where} is not JSON ({exc})") from None
        if not isinstance(advisory, dict) or "id" not in advisory:
            raise ConfigError(f"[scan] db: {where} is not an OSV advisory (no id)")
        for affected in advisory.get("affected", []):
            pkg = affected.get("package", {})
            ecosystem = OSV_ECOSYSTEM.get(str(pkg.get("ecosystem", "")).split(":")[0])
            if ecosystem and pkg.get("name"):
                key = (ecosystem, _normal(ecosystem, pkg["name"]))
                index.setdefault(key, []).append((advisory, affected))
    return index


# matching ---------------------------------------------------------------------------------
def affected_fixes(affected: dict[str, Any], version: str,
                   key: Callable[[str], Any]) -> tuple[bool, list[str]]:
    """Whether version is affected, and the fixed versions the advisory names."""
    fixed = [str(e["fixed"]) for r in affected.get("ranges", []) for e in r.get("events", [])
             if "fixed" in e]
    if version in affected.get("versions", []):
        return True, fixed
    mine = key(version)
    for rng in affected.get("ranges", []):
        if rng.get("type") not in {"ECOSYSTEM", "SEMVER"}:
            continue
        inside = False
        for event in rng.get("events", []):
            if "introduced" in event:
                start = event["introduced"]
                inside = inside or start == "0" or key(start) <= mine
            elif inside and "fixed" in event:
                inside = mine < key(event["fixed"])
            elif inside and "last_affected" in event:
                inside = mine <= key(event["last_affected"])
        if inside:
            return True, fixed
    return False, fixed


def severity_of(advisory: dict[str, Any]) -> tuple[str, str]:
    """(level, where it came from): database_specific.severity, else a CVSS v3 base score."""
    named = str((advisory.get("database_specific") or {}).get("severity", "")).lower()
    named = "moderate" if named == "medium" else named
    if named in LEVELS:
        return named, "database_specific"
    for entry in advisory.get("severity", []):
        if str(entry.get("type", "")).startswith("CVSS_V3"):
            score = cvss3_score(str(entry.get("score", "")))
            if score is not None:
                level = ("critical" if score >= 9 else "high" if score >= 7 else
                         "moderate" if score >= 4 else "low")
                return level, f"CVSS_V3 {score}"
    return "unknown", "none"


_CVSS = {"AV": {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2}, "AC": {"L": 0.77, "H": 0.44},
         "UI": {"N": 0.85, "R": 0.62}, "C": {"H": 0.56, "L": 0.22, "N": 0.0}}


def cvss3_score(vector: str) -> float | None:
    """The CVSS v3.x base score of a vector such as CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H."""
    try:
        m = dict(part.split(":") for part in vector.split("/")[1:])
        changed = m["S"] == "C"
        pr = {"N": 0.85, "L": 0.68 if changed else 0.62, "H": 0.5 if changed else 0.27}[m["PR"]]
        impact_base = 1 - ((1 - _CVSS["C"][m["C"]]) * (1 - _CVSS["C"][m["I"]])
                           * (1 - _CVSS["C"][m["A"]]))
        exploit = 8.22 * _CVSS["AV"][m["AV"]] * _CVSS["AC"][m["AC"]] * pr * _CVSS["UI"][m["UI"]]
    except (KeyError, ValueError):
        return None
    impact = (7.52 * (impact_base - 0.029) - 3.25 * (impact_base - 0.02) ** 15 if changed
              else 6.42 * impact_base)
    if impact <= 0:
        return 0.0
    raw = min(1.08 * (impact + exploit), 10) if changed else min(impact + exploit, 10)
    return math.ceil(raw * 10 - 1e-9) / 10


def scan(packages: list[Package], db: Path, ignore: list[Any],
         today: dt.date | None = None) -> Result:
    """Every advisory of db that affects one of packages; ignore entries (id, reason, until)
    mark theirs as ignored until their date passes."""
    today = today or dt.date.today()
    index = load_db(db)
    result = Result()
    active = {}
    for entry in ignore:
        if entry.until is not None and entry.until < today:
            result.expired.append(f"{entry.id} (until {entry.until})")
        else:
            active[entry.id] = entry.reason
    for package in packages:
        key = version_key(package.ecosystem)
        names = {_normal(package.ecosystem, n) for n in (package.name, package.source) if n}
        candidates = [c for n in sorted(names) for c in index.get((package.ecosystem, n), [])]
        if candidates and key is None:
            if package.ecosystem not in result.unmatched:
                result.unmatched.append(package.ecosystem)
            continue
        for advisory, affected in candidates:
            assert key is not None
            try:
                hit, fixed = affected_fixes(affected, package.version, key)
            except ValueError:  # a version this ecosystem's rules cannot parse
                continue
            if not hit:
                continue
            level, source = severity_of(advisory)
            aliases = tuple(advisory.get("aliases", []))
            reason = next((active[i] for i in (advisory["id"], *aliases) if i in active), None)
            result.findings.append(Finding(advisory["id"], aliases, package, level, source,
                                           tuple(fixed), advisory.get("summary", ""), reason))
    result.findings = _one_per_vulnerability(result.findings)
    return result


def _one_per_vulnerability(findings: list[Finding]) -> list[Finding]:
    """One finding per package and vulnerability: an advisory whose id or aliases another
    one (with a known severity first) already names is the same vulnerability."""
    kept: list[Finding] = []
    seen: dict[str, set[str]] = {}
    for f in sorted(findings, key=lambda f: (f.severity == "unknown", f.id)):
        names = {f.id, *f.aliases}
        if names & seen.setdefault(f.package.purl, set()):
            continue
        seen[f.package.purl] |= names
        kept.append(f)
    return kept


def reaching(result: Result, fail_on: str | None) -> list[Finding]:
    """The findings, not ignored, at or above fail_on (none when fail_on is not set)."""
    if fail_on is None:
        return []
    floor = LEVELS.index(fail_on)
    return [f for f in result.findings if f.ignored is None and f.severity in LEVELS
            and LEVELS.index(f.severity) >= floor]


# freshness and updates --------------------------------------------------------------------
UPDATE_ECOSYSTEMS = ("PyPI", "npm", "Debian")


def age(db: Path, now: float | None = None) -> float:
    """Seconds since the database's newest file was written (a zip: the zip itself)."""
    import time

    if db.is_dir():
        stamps = [p.stat().st_mtime for p in db.rglob("*.json")] or [db.stat().st_mtime]
    elif db.exists():
        stamps = [db.stat().st_mtime]
    else:
        raise ConfigError(f"[scan] db: {db} does not exist",
                          hint="headway scan --update downloads it")
    return max(0.0, (now or time.time()) - max(stamps))


def update(db: Path, url_template: str, ecosystems: tuple[str, ...] = UPDATE_ECOSYSTEMS,
           *, timeout: float = 60) -> dict[str, int]:
    """Download each ecosystem's OSV export (a zip of JSON advisories) and put it in db: a
    folder gets one subfolder per ecosystem, replaced whole; a zip path gets one zip of them
    all. Nothing changes unless every download succeeds. Returns advisories per ecosystem."""
    import io

    import httpx

    archives: dict[str, zipfile.ZipFile] = {}
    for ecosystem in ecosystems:
        url = url_template.replace("{ecosystem}", ecosystem)
        try:
            answer = httpx.get(url, timeout=timeout, follow_redirects=True)
            answer.raise_for_status()
            archives[ecosystem] = zipfile.ZipFile(io.BytesIO(answer.content))
        except httpx.HTTPError as exc:
            raise RuntimeFailure(f"scan --update: cannot download {url} ({exc})",
                                 hint="no network to it? [scan] update_url can name a mirror; "
                                 f"the database at {db} was left as it was") from None
        except zipfile.BadZipFile:
            raise RuntimeFailure(f"scan --update: {url} is not a zip of OSV files",
                                 hint="[scan] update_url must name the export's all.zip, with "
                                 "{ecosystem} in it") from None
    counts = {e: sum(n.endswith(".json") for n in z.namelist()) for e, z in archives.items()}
    if db.suffix == ".zip" or (db.is_file() and zipfile.is_zipfile(db)):
        _write_zip(db, archives)
    elif db.exists() and not db.is_dir():
        raise ConfigError(f"[scan] db: {db} is neither a folder nor a zip of OSV JSON files")
    else:
        _write_folder(db, archives)
    return counts


def _write_zip(db: Path, archives: dict[str, zipfile.ZipFile]) -> None:
    """One zip of every ecosystem's advisories, in place of db at once."""
    import tempfile

    db.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=db.parent, suffix=".zip", delete=False) as tmp, \
            zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as out:
        for ecosystem, archive in archives.items():
            for name in archive.namelist():
                if name.endswith(".json"):
                    out.writestr(f"{ecosystem}/{Path(name).name}", archive.read(name))
    Path(tmp.name).replace(db)


def _write_folder(db: Path, archives: dict[str, zipfile.ZipFile]) -> None:
    """db/ECOSYSTEM/*.json, each ecosystem's folder replaced whole."""
    import shutil
    import tempfile

    db.mkdir(parents=True, exist_ok=True)
    for ecosystem, archive in archives.items():
        fresh = Path(tempfile.mkdtemp(dir=db, prefix=f".{ecosystem}-"))
        for name in archive.namelist():
            if name.endswith(".json"):
                (fresh / Path(name).name).write_bytes(archive.read(name))
        shutil.rmtree(db / ecosystem, ignore_errors=True)
        fresh.rename(db / ecosystem)
