"""HTTPS: [router] tls = "acme" against Let's Encrypt's test server (pebble, started here with
its DNS answering 127.0.0.1 for every name) and a certificate the user brings; through the
real CLI, HAProxy and agent. Rendering and spec checks first (fast), then one deployed app
for the module: issuance, HTTPS and redirect, renewal under load, a refused issuance, own
files."""

from __future__ import annotations

import datetime
import json
import shutil
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from headway.router.base import Backend
from headway.router.haproxy import Https, render_config
from headway.spec.models import RouterSpec
from headway.tls import sites as tls_sites
from headway.tls.sites import CertInfo, Site
from tests import pebble
from tests.conftest import EXAMPLE, App, _kill_leftovers, free_port, wait_for

HOST = "shop.test"


# rendering and spec (no processes) -------------------------------------------------------------
def _site(**kw: object) -> Site:
    return Site(**{"app": "shop", "env": "production", "https_port": 8443, "mode": "acme",
                   "hosts": [HOST], "hsts": 86400.0, **kw})  # type: ignore[arg-type]


def test_https_config_answers_challenges_redirects_and_serves_the_certificate() -> None:
    shop = Backend("be_shop_production", 80, "0.0.0.0", [HOST], False, "/up", 1.0)
    blog = Backend("be_blog_production", 80, "0.0.0.0", ["blog.test"], True, "/", 1.0)
    home = Path("/h")
    pending = render_config([shop, blog], admin_socket=Path("/a"), log_socket=None,
                            https=Https(home, [_site()]))
    challenge = ("  http-request set-var(txn.acme) path,field(4,/),map(/h/tls/challenges.map) "
                 "if { path_beg /.well-known/acme-challenge/ }\n  http-request return status "
                 '200 content-type text/plain lf-string "%[var(txn.acme)]" if { var(txn.acme) '
                 "-m found }\n  use_backend be_shop_production")
    assert challenge in pending
    assert "redirect" not in pending and " ssl " not in pending  # no certificate yet
    cfg = render_config([shop, blog], admin_socket=Path("/a"), log_socket=None,
                        https=Https(home, [_site()], frozenset({"shop-production"})))
    assert ('  http-request redirect location "https://%[req.hdr(host),field(1,:)]:8443'
            "%[capture.req.uri]\" code 301 if { req.hdr(host),field(1,:),lower -m str "
            "'shop.test' }\n") in cfg
    assert ("frontend fe_https_8443\n  bind '0.0.0.0:8443' ssl crt "
            "'/h/tls/certs/shop-production.pem' alpn h2,http/1.1\n"
            "  http-request set-header X-Forwarded-Proto https\n"
            "  use_backend be_shop_production if { req.hdr(host),field(1,:),lower -m str "
            "'shop.test' }\n  default_backend be_shop_production\n") in cfg
    assert ("  http-response set-header Strict-Transport-Security max-age=86400 "
            "if { ssl_fc }\n") in cfg
    assert cfg.count("Strict-Transport-Security") == 1  # blog has no tls
    own = render_config([shop], admin_socket=Path("/a"), log_socket=None, https=Https(
        home, [_site(mode="files", https_port=443, hsts=None)], frozenset({"shop-production"})))
    assert "acme-challenge" not in own  # its own files: nothing to validate
    assert '"https://%[req.hdr(host),field(1,:)]%[capture.req.uri]" code 301' in own
    gone = render_config([blog], admin_socket=Path("/a"), log_socket=None,
                         https=Https(home, [_site()], frozenset({"shop-production"})))
    assert "ssl" not in gone and "acme" not in gone  # a site whose app is gone is left out


def test_tls_settings_are_checked_when_headway_toml_loads() -> None:
    def refused(**kw: object) -> str:
        with pytest.raises(ValidationError) as err:
            RouterSpec(**kw)  # type: ignore[arg-type]
        return str(err.value)

    assert 'needs the names to certify: hosts = ["shop.example.com"]' in refused(tls="acme")
    assert "https_port: 8080 is also `port`" in refused(tls="acme", hosts=[HOST], port=8080,
                                                        https_port=8080)
    assert "is not an absolute path" in refused(tls={"cert": "c.pem", "key": "/k.pem"})
    assert "hsts: needs tls" in refused(hsts="365d")
    spec = RouterSpec(tls="acme", hosts=[HOST], hsts="365d")
    assert spec.https_port == 443 and spec.hsts == 365 * 86400
    assert spec.acme.directory == "https://acme-v02.api.letsencrypt.org/directory"


def test_renewal_is_due_30_days_before_expiry() -> None:
    now = time.time()
    assert not CertInfo([HOST], "ca", now + 31 * 86400, "1").due(now)
    assert CertInfo([HOST], "ca", now + 29 * 86400, "1").due(now)


def test_a_users_files_are_checked_before_haproxy_gets_them(tmp_path: Path) -> None:
    from headway.errors import ConfigError
    from headway.tls.manage import user_pem

    ca_key, ca = _ca()
    cert, key = tmp_path / "shop.pem", tmp_path / "shop.key"
    _leaf(ca_key, ca, cert, key)
    site = _site(mode="files", cert_file=str(cert), key_file=str(key))
    assert user_pem(site).count("BEGIN") == 3  # chain (leaf, CA) and key, as HAProxy loads it
    other = tmp_path / "other.key"
    _leaf(ca_key, ca, tmp_path / "other.pem", other)
    with pytest.raises(ConfigError, match=f"the key {other} does not belong to the certificate"):
        user_pem(_site(mode="files", cert_file=str(cert), key_file=str(other)))
    with pytest.raises(ConfigError, match=r"\[router\] tls.key: cannot read /nowhere.key"):
        user_pem(_site(mode="files", cert_file=str(cert), key_file="/nowhere.key"))


# one app behind HTTPS, against pebble ------------------------------------------------------
class Served:
    def __init__(self, app: App, acme: pebble.Pebble, https_port: int) -> None:
        self.app, self.acme, self.https_port = app, acme, https_port
        self.context = ssl.create_default_context(cadata=acme.root_pem())

    def get(self, path: str = "/", *, client: httpx.Client | None = None) -> httpx.Response:
        request = httpx.Request("GET", f"https://127.0.0.1:{self.https_port}{path}",
                                headers={"Host": HOST}, extensions={"sni_hostname": HOST})
        if client is not None:
            return client.send(request)
        with httpx.Client(verify=self.context, timeout=10) as fresh:
            return fresh.send(request)

    def served(self, context: ssl.SSLContext | None = None) -> x509.Certificate:
        """The certificate a new TLS handshake for HOST gets."""
        with socket.create_connection(("127.0.0.1", self.https_port), timeout=5) as raw, \
                (context or self.context).wrap_socket(raw, server_hostname=HOST) as tls:
            der = tls.getpeercert(binary_form=True)
        assert der
        return x509.load_der_x509_certificate(der)

    def serial(self, context: ssl.SSLContext) -> int | None:
        """The served certificate's serial, None while one the context trusts is not served."""
        try:
            return int(self.served(context).serial_number)
        except (OSError, ssl.SSLError):
            return None

    def status(self, *, cli: bool = False) -> dict[str, object]:
        """`headway tls status --json`'s row (read in this process unless `cli`)."""
        if cli:
            rows = json.loads(self.app.run("tls", "status", "--json").stdout)
        else:
            rows = tls_sites.status(self.app.home, now=time.time())
        return dict(rows[0]) if rows else {"state": None, "issuer": None}

    def answers(self) -> bool:
        try:
            return self.get("/").status_code == 200
        except httpx.HTTPError:
            return False

    def worker_pid(self) -> int:
        from headway.router import HAProxy

        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(HAProxy(self.app.home).admin))
            s.sendall(b"show info\n")
            info = b"".join(iter(lambda: s.recv(65536), b"")).decode()
        return int(next(line for line in info.splitlines() if line.startswith("Pid:"))[4:])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    if not pebble.installed():
        pytest.fail("pebble is not installed: run scripts/setup.sh or `apt-get install pebble`")
    from headway.runtime.appuser import app_root

    tmp = tmp_path_factory.mktemp("tls")
    port, https_port = free_port(), free_port()
    acme = pebble.Pebble(tmp / "pebble", http_port=port).start()
    shutil.copytree(EXAMPLE, tmp / "hello")
    app = App(tmp / "hello", tmp / "home", port)
    app.metrics_port, app.router_metrics_port = free_port(), free_port()
    (app.dir / "headway.toml").write_text((app.dir / "headway.toml").read_text().replace(
        "port = 18080", f"port = {port}").replace("replicas = 2", "replicas = 1"))
    app.configure(
        observe=f"metrics_port = {app.metrics_port}\nrouter_metrics_port = {app.router_metrics_port}",
        router=f'address = "127.0.0.1"\nhosts = ["{HOST}"]\ntls = "acme"\n'
               f'https_port = {https_port}\nhsts = "365d"',
        router__acme=f'email = "ops@example.com"\ndirectory = "{acme.directory}"\n'
                     f'ca_bundle = "{acme.ca_bundle}"',
        processes__web__health='interval = "200ms"\ntimeout = "1s"',
        deploy='timeout = "20s"\ndrain_timeout = "5s"')
    try:
        app.run("deploy")
        yield Served(app, acme, https_port)
    finally:
        app.run("destroy", "--yes", check=False, timeout=60)
        _kill_leftovers(app.home)
        shutil.rmtree(app_root(app.home), ignore_errors=True)
        acme.stop()


@pytest.mark.integration
def test_the_agent_issues_a_certificate_https_answers_and_http_redirects(site: Served) -> None:
    wait_for(lambda: site.status()["state"] == "ok" and site.answers(),
             "the agent's certificate to be served", timeout=40)
    row = site.status(cli=True)
    assert row["names"] == [HOST] and str(row["issuer"]).startswith("Pebble Intermediate CA")
    assert int(str(row["days_left"])) > 30
    answer = site.get("/")  # trusting pebble's root only, for the name shop.test
    assert answer.status_code == 200 and answer.json()["app"] == "hello"
    assert answer.headers["strict-transport-security"] == "max-age=31536000"
    plain = httpx.get(f"http://127.0.0.1:{site.app.port}/a?b=1", headers={"Host": HOST},
                      timeout=5)
    assert plain.status_code == 301
    assert plain.headers["location"] == f"https://{HOST}:{site.https_port}/a?b=1"
    cert = site.app.home / "tls" / "certs" / "hello-production.pem"
    assert cert.stat().st_mode & 0o777 == 0o600
    from headway.store import Store

    events = Store(site.app.home).events("hello", "production")
    assert any(e["kind"] == "tls.issued" and HOST in e["message"] for e in events)


@pytest.mark.integration
def test_forced_renewal_under_load_swaps_the_certificate_without_reload_or_failure(
        site: Served) -> None:
    wait_for(lambda: site.status()["state"] == "ok" and site.answers(), "HTTPS", timeout=40)
    before, pid = site.served().serial_number, site.worker_pid()
    codes: Counter[str] = Counter()
    stop = threading.Event()

    def load(fresh: bool) -> None:  # new handshakes (fresh) and kept-alive connections
        with httpx.Client(verify=site.context, timeout=10) as kept:
            while not stop.is_set():
                try:
                    codes[str(site.get("/", client=None if fresh else kept).status_code)] += 1
                except httpx.HTTPError as exc:
                    codes[type(exc).__name__] += 1
                time.sleep(0.01)  # steady load that leaves the CLI under test some CPU

    workers = [threading.Thread(target=load, args=(fresh,)) for fresh in (True, True, False)]
    for w in workers:
        w.start()
    time.sleep(0.5)
    renewed = site.app.run("tls", "renew", "--force")
    time.sleep(0.5)
    stop.set()
    for w in workers:
        w.join(timeout=15)
    assert "certificate renewed for shop.test" in renewed.stdout + renewed.stderr
    assert "loaded by runtime API" in renewed.stdout + renewed.stderr
    assert set(codes) == {"200"} and codes["200"] > 20, codes
    assert site.served().serial_number != before
    assert f"{site.served().serial_number:x}" == site.status()["serial"]
    assert site.worker_pid() == pid  # no reload


@pytest.mark.integration
def test_a_refused_issuance_names_the_domain_and_https_keeps_its_certificate(
        site: Served) -> None:
    wait_for(lambda: site.status()["state"] == "ok" and site.answers(), "HTTPS", timeout=40)
    serial = site.served().serial_number
    site.acme.resolve(HOST, "127.0.0.9")  # its DNS now points where nothing answers
    try:
        refused = site.app.run("tls", "renew", "--force", check=False)
    finally:
        site.acme.resolve(HOST, "127.0.0.1")
    assert refused.returncode == 2, refused.stderr
    assert "could not validate shop.test" in refused.stderr
    assert "connection refused" in refused.stderr
    assert "point shop.test (DNS) at this host" in refused.stderr.replace("\n", " ")
    assert "Traceback" not in refused.stderr
    assert site.served().serial_number == serial
    assert site.get("/").status_code == 200
    assert site.status()["state"] == "failed"
    assert "could not validate shop.test" in site.app.run("tls", "status").stderr


@pytest.mark.integration
def test_a_certificate_the_user_brings_is_served_and_reloaded_when_its_files_change(
        site: Served, tmp_path: Path) -> None:
    ca_key, ca = _ca()
    own = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    cert, key = tmp_path / "shop.pem", tmp_path / "shop.key"
    _leaf(ca_key, ca, cert, key)
    site.app.configure(router=f'tls = {{ cert = "{cert}", key = "{key}" }}')
    site.app.run("deploy")
    wait_for(lambda: site.serial(own) is not None, "the user's certificate", timeout=40)
    assert site.status()["issuer"] == "headway test CA"
    first = site.serial(own)
    with httpx.Client(verify=own, timeout=10) as client:
        assert site.get("/", client=client).status_code == 200
    pid = site.worker_pid()
    _leaf(ca_key, ca, cert, key)  # renewed by the user, in place
    wait_for(lambda: site.serial(own) not in {first, None}, "the new files to be served",
             timeout=30)
    assert site.worker_pid() == pid
    assert httpx.get(f"http://127.0.0.1:{site.app.port}/", headers={"Host": HOST},
                     timeout=5).status_code == 301


def _ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "headway test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=90))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def _leaf(ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, cert: Path,
          key_file: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=60))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    key_file.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert.write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
