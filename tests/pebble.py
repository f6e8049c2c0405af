"""Let's Encrypt's ACME test server (Debian's `pebble`) and its DNS (`pebble-challtestsrv`) as
a test's own processes on loopback: every name resolves to 127.0.0.1, and pebble validates
HTTP-01 challenges on `http_port` (the router's HTTP port). Its listener has a certificate
made here (ca.pem, the `ca_bundle` to trust); the root it issues under is `root_pem()`.
For tests and benchmarks only; loopback only."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def installed() -> bool:
    return bool(shutil.which("pebble") and shutil.which("pebble-challtestsrv"))


class Pebble:
    def __init__(self, folder: Path, *, http_port: int) -> None:
        self.dir, self.http_port = folder, http_port
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port, self.management = _port(), _port()
        self.dns, self.dns_management = _port(), _port()
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    @property
    def ca_bundle(self) -> Path:
        return self.dir / "ca.pem"

    def start(self) -> Pebble:
        self._listener_certificate()
        config = {"pebble": {
            "listenAddress": f"127.0.0.1:{self.port}",
            "managementListenAddress": f"127.0.0.1:{self.management}",
            "certificate": str(self.dir / "listener.pem"),
            "privateKey": str(self.dir / "listener.key"),
            "httpPort": self.http_port, "tlsPort": _port(), "ocspResponderURL": "",
            "externalAccountBindingRequired": False}}
        (self.dir / "pebble.json").write_text(json.dumps(config))
        self._spawn(["pebble-challtestsrv", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
                     "-dns01", f"127.0.0.1:{self.dns}", "-http01", "", "-https01", "",
                     "-tlsalpn01", "",
                     "-management", f"127.0.0.1:{self.dns_management}"], "challtestsrv.log")
        env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0",
                   PEBBLE_AUTHZREUSE="0")
        self._spawn(["pebble", "-config", str(self.dir / "pebble.json"), "-dnsserver",
                     f"127.0.0.1:{self.dns}"], "pebble.log", env=env)
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(self.directory, verify=str(self.ca_bundle), timeout=2)
                httpx.post(f"http://127.0.0.1:{self.dns_management}/clear-a",
                           json={"host": "x."}, timeout=2)
                return self
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise AssertionError("pebble did not start:\n" + self.logs()) from None
                time.sleep(0.1)

    def root_pem(self) -> str:
        """The root pebble issues under (random per run), for clients of the router."""
        return httpx.get(f"https://127.0.0.1:{self.management}/roots/0",
                         verify=str(self.ca_bundle), timeout=5).text

    def resolve(self, host: str, address: str) -> None:
        """Make `host` resolve to `address` for pebble's validation (e.g. a host not served)."""
        httpx.post(f"http://127.0.0.1:{self.dns_management}/add-a",
                   json={"host": host.rstrip(".") + ".", "addresses": [address]}, timeout=5
                   ).raise_for_status()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:]
                         for p in (self.dir / "pebble.log", self.dir / "challtestsrv.log")
                         if p.exists())

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()

    def _spawn(self, argv: list[str], log: str, *, env: dict[str, str] | None = None) -> None:
        with open(self.dir / log, "wb") as out:
            self.procs.append(subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                               env=env))

    def _listener_certificate(self) -> None:
        """A CA (ca.pem, what ACME clients trust) and pebble's listener certificate under it."""
        now = datetime.datetime.now(datetime.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "headway test pebble CA")])
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=5))
              .not_valid_after(now + datetime.timedelta(days=2))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                           False), critical=True)
              .sign(ca_key, hashes.SHA256()))
        key = ec.generate_private_key(ec.SECP256R1())
        import ipaddress

        leaf = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
                .issuer_name(ca_name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=2))
                .add_extension(x509.SubjectAlternativeName([
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        pem = serialization.Encoding.PEM
        (self.dir / "ca.pem").write_bytes(ca.public_bytes(pem))
        (self.dir / "listener.pem").write_bytes(leaf.public_bytes(pem))
        (self.dir / "listener.key").write_bytes(key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
