"""What the router serves over HTTPS, as files under $HEADWAY_HOME/tls: sites.json (one site per
app and environment whose live release sets [router] tls), certs/APP-ENV.pem (chain and key in
one file, as HAProxy loads it, mode 0600), challenges.map (pending HTTP-01 tokens) and
status.json (the last failure per site). Reading a certificate's names, issuer and expiry.
Imports nothing of Headway but its errors: the HAProxy driver reads it. Never prints; never
writes a key anywhere but certs/ with mode 0600."""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

RENEW_BEFORE = 30 * 86400.0  # seconds before expiry the agent renews a certificate


@dataclass(frozen=True)
class Site:
    """One app/environment served over HTTPS. `mode` is "acme" or "files" (the user's own
    cert and key at `cert_file`, `key_file`)."""

    app: str
    env: str
    https_port: int
    mode: str
    hosts: list[str] = field(default_factory=list)
    http_port: int = 80  # where ACME validates (the router's HTTP port), for messages
    hsts: float | None = None
    email: str | None = None
    directory: str = ""
    ca_bundle: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    @property
    def backend(self) -> str:
        return f"be_{self.app}_{self.env}"  # router.base.backend_name, without importing it

    @property
    def name(self) -> str:
        return f"{self.app}-{self.env}"


@dataclass(frozen=True)
class CertInfo:
    names: list[str]
    issuer: str
    not_after: float  # epoch seconds
    serial: str

    def due(self, now: float) -> bool:
        return self.not_after - now < RENEW_BEFORE


def folder(home: Path) -> Path:
    return home / "tls"


def cert_path(home: Path, site: Site) -> Path:
    return folder(home) / "certs" / f"{site.name}.pem"


def challenge_map(home: Path) -> Path:
    return folder(home) / "challenges.map"


def load(home: Path) -> list[Site]:
    try:
        rows = json.loads((folder(home) / "sites.json").read_text())
        return [Site(**row) for row in rows]
    except (OSError, ValueError, TypeError):
        return []


def save(home: Path, sites: list[Site]) -> None:
    _write(folder(home) / "sites.json", json.dumps([asdict(s) for s in sites], indent=1))


def installed(home: Path, site: Site) -> bool:
    return cert_path(home, site).exists()


def write_cert(home: Path, site: Site, pem: str) -> None:
    """The chain and key in one file, 0600 from its first byte, replaced atomically."""
    path = cert_path(home, site)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(pem)
    os.replace(tmp, path)


def source(home: Path, site: Site) -> str | None:
    """Where the installed certificate came from: "acme" or "files" (None: unknown)."""
    try:
        return cert_path(home, site).with_suffix(".source").read_text().strip()
    except OSError:
        return None


def set_source(home: Path, site: Site) -> None:
    _write(cert_path(home, site).with_suffix(".source"), site.mode + "\n")


def info(pem: str) -> CertInfo:
    """Names, issuer and expiry of the first certificate in a PEM text."""
    cert = x509.load_pem_x509_certificates(pem.encode())[0]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = [str(n) for n in san.value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    issuer = next((str(a.value) for a in cert.issuer.get_attributes_for_oid(
        NameOID.COMMON_NAME)), cert.issuer.rfc4514_string())
    return CertInfo(names, issuer, cert.not_valid_after_utc.timestamp(), f"{cert.serial_number:x}")


def installed_info(home: Path, site: Site) -> CertInfo | None:
    try:
        return info(cert_path(home, site).read_text())
    except (OSError, ValueError, IndexError):
        return None


def key_matches(cert_pem: str, key_pem: str) -> bool:
    cert = x509.load_pem_x509_certificates(cert_pem.encode())[0]
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    return bool(cert.public_key().public_bytes(enc, fmt) == key.public_key().public_bytes(enc, fmt))


def status(home: Path, *, now: float) -> list[dict[str, Any]]:
    """Each site's certificate: names, issuer, expiry, and its state."""
    failed = failures(home)
    rows: list[dict[str, Any]] = []
    for site in load(home):
        have = installed_info(home, site)
        state = "ok"
        if have is None:
            state = "pending"
        elif site.mode == "acme" and have.due(now):
            state = "renewal due"
        error = failed.get(site.name, {}).get("error")
        if error:
            state = "failed"
        rows.append({"app": site.app, "env": site.env, "https_port": site.https_port,
                     "source": site.directory if site.mode == "acme" else site.cert_file,
                     "names": have.names if have else site.hosts,
                     "issuer": have.issuer if have else None,
                     "expires": date(have.not_after) if have else None,
                     "days_left": int((have.not_after - now) // 86400) if have else None,
                     "serial": have.serial if have else None, "state": state,
                     "error": error})
    return rows




def date(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


# failures, for `headway tls status` and the agent's retry pace ------------------------------
def failures(home: Path) -> dict[str, dict[str, Any]]:
    try:
        return dict(json.loads((folder(home) / "status.json").read_text()))
    except (OSError, ValueError):
        return {}


def record_failure(home: Path, site: Site, message: str | None) -> None:
    """The last failure of a site's certificate (None: it worked)."""
    data = failures(home)
    if message is None:
        if data.pop(site.name, None) is None:
            return
    else:
        data[site.name] = {"error": message, "at": time_now(), "mode": site.mode}
    _write(folder(home) / "status.json", json.dumps(data, indent=1))


def time_now() -> float:
    return datetime.datetime.now(datetime.UTC).timestamp()


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
