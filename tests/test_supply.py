"""`headway sbom` and `headway scan`: the CycloneDX SBOM of a real release (its virtualenv's
pinned packages, each with a purl, valid against the CycloneDX schema) and its match
against a small OSV fixture of real advisories (tests/fixtures/osv), with fail_on and
ignore-until. Nothing here calls a vulnerability service."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from headway.errors import ConfigError
from headway.runtime.appuser import app_root
from headway.spec.load import parse_spec
from headway.supply import scan
from headway.supply.sbom import Package, dpkg_packages, purl
from tests.conftest import EXAMPLE, App, _kill_leftovers, free_port
from tests.test_containers import base_images, podman, podman_app  # noqa: F401 - fixtures

OSV = Path(__file__).parent / "fixtures" / "osv"
JINJA = "GHSA-462w-v97r-4m45"  # Jinja2 < 2.10.1: sandbox escape (CVE-2019-10906), HIGH


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """examples/hello pinning jinja2==2.10, deployed once on the process runtime."""
    tmp = tmp_path_factory.mktemp("supply")
    folder = tmp / "hello"
    shutil.copytree(EXAMPLE, folder)
    (folder / "requirements.txt").write_text(
        (folder / "requirements.txt").read_text() + "jinja2==2.10\n")
    shutil.copytree(OSV, folder / "osv")
    app = App(folder, tmp / "home", free_port())
    app.metrics_port, app.router_metrics_port = free_port(), free_port()
    (folder / "headway.toml").write_text((folder / "headway.toml").read_text().replace(
        "port = 18080", f'port = {app.port}\naddress = "127.0.0.1"') + f"""
[observe]
metrics_port = {app.metrics_port}
router_metrics_port = {app.router_metrics_port}
""")
    app.run("deploy", timeout=300)
    yield app
    app.run("destroy", "--yes", check=False, timeout=60)
    _kill_leftovers(app.home)
    shutil.rmtree(app_root(app.home), ignore_errors=True)


def with_scan(app: App, body: str) -> None:
    """Replace the [scan] table (appended last) of the app's headway.toml."""
    path = app.dir / "headway.toml"
    text = path.read_text().split("\n[scan]\n")[0]
    path.write_text(f"{text}\n[scan]\n{body}\n")


def test_sbom_of_a_process_release_lists_its_pinned_packages_with_purls(release: App) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    out = release.run("sbom")
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(out.stdout) is None
    bom = json.loads(out.stdout)
    purls = {c["purl"] for c in bom["components"]}
    assert {"pkg:pypi/jinja2@2.10", "pkg:pypi/fastapi@0.165.0",
            "pkg:pypi/uvicorn@0.54.0"} <= purls
    assert bom["metadata"]["component"]["name"] == "hello"
    assert not any(p.startswith("pkg:deb/") for p in purls)  # a process release: no OS packages

    written = release.dir / "sbom.json"
    release.run("sbom", "1", "-o", str(written))
    assert {c["purl"] for c in json.loads(written.read_text())["components"]} == purls


def test_sbom_of_a_release_that_does_not_exist_says_so(release: App) -> None:
    missing = release.run("sbom", "9", check=False)
    assert missing.returncode == 7
    assert "no release 9" in missing.stderr and "Traceback" not in missing.stderr
    never = release.run("--app", "other", "sbom", check=False)
    assert never.returncode == 7 and "no built release" in never.stderr


def test_scan_reports_the_pinned_vulnerable_version_with_severity_and_fix(release: App) -> None:
    with_scan(release, 'db = "osv"')
    out = release.run("scan")  # no fail_on: a report, exit 0
    assert JINJA in out.stdout and "Jinja2 2.10 -> fixed in 2.10.1" in out.stdout
    assert out.stdout.index("high:") < out.stdout.index("moderate:")
    data = json.loads(release.run("scan", "--json").stdout)
    found = {f["id"]: f for f in data["findings"]}
    assert found[JINJA]["severity"] == "high" and found[JINJA]["fixed"] == ["2.10.1"]
    assert found["GHSA-g3rq-g295-4j3m"]["severity"] == "moderate"
    assert "PYSEC-2019-217" not in found  # an alias of the GHSA one: reported once


def test_scan_fails_at_fail_on_and_ignores_until_the_date(release: App) -> None:
    with_scan(release, 'db = "osv"\nfail_on = "high"')
    failed = release.run("scan", check=False)
    assert failed.returncode == 8, failed.stderr
    assert JINJA in failed.stderr and "Traceback" not in failed.stderr

    future = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    with_scan(release, f'db = "osv"\nfail_on = "high"\n[[scan.ignore]]\nid = "{JINJA}"\n'
              f'reason = "templates are not user-supplied"\nuntil = {future}')
    assert "ignored: templates are not user-supplied" in release.run("scan").stdout

    with_scan(release, f'db = "osv"\nfail_on = "medium"\n[[scan.ignore]]\nid = "{JINJA}"\n'
              f'reason = "templates are not user-supplied"\nuntil = {future}')
    assert release.run("scan", check=False).returncode == 8  # the moderate one still counts

    with_scan(release, f'db = "osv"\nfail_on = "high"\n[[scan.ignore]]\nid = "{JINJA}"\n'
              'reason = "templates are not user-supplied"\nuntil = 2020-01-01')
    expired = release.run("scan", check=False)
    assert expired.returncode == 8 and "ignore expired" in expired.stdout

    ci = release.run("ci", "run", "scan", "--env", "production", check=False)
    assert ci.returncode == 8 and "stage scan failed" in ci.stderr


def test_scan_with_a_missing_database_is_a_config_error(release: App) -> None:
    with_scan(release, 'db = "nowhere"')
    out = release.run("scan", check=False)
    assert out.returncode == 2 and "nowhere" in out.stderr and "does not exist" in out.stderr


def test_version_matching_per_ecosystem() -> None:
    def pkg(eco: str, name: str, version: str) -> Package:
        return Package(eco, name, version, purl(eco, name, version))

    found = scan.scan([pkg("npm", "lodash", "4.17.15"), pkg("npm", "lodash", "4.17.19"),
                       pkg("npm", "lodash", "3.6.0"), pkg("pypi", "Jinja2", "2.10.1"),
                       pkg("pypi", "jinja2", "2.11.3")], OSV, [])
    assert [(f.id, f.package.version, f.fixed) for f in found.findings] == [
        ("GHSA-g3rq-g295-4j3m", "2.10.1", ("2.11.3",)),
        ("GHSA-p6mc-m468-83gw", "4.17.15", ("4.17.19",))]
    assert scan._semver_key("1.0.0-rc.1") < scan._semver_key("1.0.0")
    assert scan.cvss3_score("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:N/A:N") == 8.6
    assert scan.severity_of({"severity": [{"type": "CVSS_V3", "score":
                             "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:H/A:H"}]}) == (
        "high", "CVSS_V3 7.4")
    debian = {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.11-1~deb12u2"}]}
    key = scan.version_key("deb")
    assert key is not None
    assert scan.affected_fixes({"ranges": [debian]}, "3.0.11-1~deb12u1", key)[0]
    assert not scan.affected_fixes({"ranges": [debian]}, "3.0.11-1~deb12u2", key)[0]


def test_dpkg_status_packages_have_deb_purls() -> None:
    status = ("Package: libssl3\nStatus: install ok installed\nArchitecture: amd64\n"
              "Source: openssl\nVersion: 3.0.11-1~deb12u2\n\n"
              "Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n")
    [ssl] = dpkg_packages(status)
    assert ssl.purl == "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64"
    assert ssl.source == "openssl"


def test_an_image_that_is_gone_is_not_found() -> None:
    from headway.errors import NotFound
    from headway.supply.sbom import mounted

    with pytest.raises(NotFound, match="is gone"), mounted("podman", "0123456789ab"):
        pass


@pytest.mark.integration
def test_sbom_of_a_podman_release_lists_its_debian_and_python_packages(
        podman_app: App) -> None:  # noqa: F811 - the fixture imported above
    app = podman_app
    (app.dir / "requirements.txt").write_text(
        (app.dir / "requirements.txt").read_text() + "jinja2==2.10\n")
    app.run("deploy", timeout=600)
    bom = json.loads(app.run("sbom", timeout=120).stdout)
    purls = {c["purl"] for c in bom["components"]}
    assert any(p.startswith("pkg:deb/debian/libc6@") and "arch=" in p for p in purls)
    assert "pkg:pypi/jinja2@2.10" in purls and "pkg:pypi/fastapi@0.165.0" in purls
    (app.dir / "headway.toml").write_text((app.dir / "headway.toml").read_text()
                                          + f'\n[scan]\ndb = "{OSV}"\nfail_on = "high"\n')
    scanned = app.run("scan", check=False, timeout=120)
    assert scanned.returncode == 8 and JINJA in scanned.stdout


@pytest.mark.integration
def test_fail_on_refuses_the_image_in_build_and_deploy(
        app: App) -> None:
    """The [scan] fail_on gate on a one-file image (FROM scratch) whose /venv holds the
    metadata of jinja2 2.10: `headway build` and a deploy refuse it (exit 8, nothing pushed
    or started). Ignore entries go through the same scan.reaching as `headway scan`
    (test_scan_fails_at_fail_on_and_ignores_until_the_date)."""
    toml = app.dir / "headway.toml"
    toml.write_text(toml.read_text().replace('runtime = "process"', 'runtime = "podman"')
                    + f'\n[scan]\ndb = "{OSV}"\nfail_on = "high"\n')
    meta = app.dir / "deps/lib/python3.11/site-packages/Jinja2-2.10.dist-info/METADATA"
    meta.parent.mkdir(parents=True)
    meta.write_text("Metadata-Version: 2.1\nName: Jinja2\nVersion: 2.10\n")
    (app.dir / "Containerfile").write_text("FROM scratch\nCOPY deps /venv\n")
    refused = app.run("build", check=False, timeout=300)
    assert refused.returncode == 8, refused.stdout + refused.stderr
    assert JINJA in refused.stderr and "refused" in refused.stderr
    deploy = app.run("deploy", check=False, timeout=300)
    assert deploy.returncode == 8 and JINJA in deploy.stderr
    assert podman("ps", "-aq", "--filter", f"label=headway.home={app.home}").strip() == ""
    assert [r["status"] for r in json.loads(app.run("releases", "--json").stdout)] == ["failed"]


def test_a_zip_database_and_last_affected_ranges(tmp_path: Path) -> None:
    import zipfile

    db = tmp_path / "osv.zip"
    with zipfile.ZipFile(db, "w") as archive:
        for advisory in OSV.glob("*.json"):
            archive.write(advisory, advisory.name)
    jinja = Package("pypi", "Jinja2", "2.10", purl("pypi", "Jinja2", "2.10"))
    assert {f.id for f in scan.scan([jinja], db, []).findings} == {
        JINJA, "GHSA-g3rq-g295-4j3m"}
    last = {"ranges": [{"type": "SEMVER", "events": [{"introduced": "1.0.0"},
                                                     {"last_affected": "1.2.0"}]}]}
    key = scan._semver_key
    assert scan.affected_fixes(last, "1.2.0", key)[0]
    assert not scan.affected_fixes(last, "1.2.1", key)[0]
    assert not scan.affected_fixes(last, "0.9.0", key)[0]


def headway(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "headway", *args], cwd=folder, text=True,
                          capture_output=True, timeout=120, check=False,
                          env=dict(os.environ, HEADWAY_HOME=str(folder / "home")))


def scan_app(folder: Path, scan_table: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "headway.toml").write_text('[app]\nname = "shop"\n[processes.web]\ncommand = '
                                         f'"python3 app.py"\n[scan]\n{scan_table}\n')


@pytest.fixture
def osv_server(tmp_path: Path) -> Iterator[str]:
    """The fixture advisories as OSV's export layout (/PyPI/all.zip) on loopback."""
    import functools
    import http.server
    import threading
    import zipfile

    site = tmp_path / "site" / "PyPI"
    site.mkdir(parents=True)
    with zipfile.ZipFile(site / "all.zip", "w") as archive:
        for advisory in OSV.glob("*.json"):
            archive.write(advisory, advisory.name)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(tmp_path / "site"))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{{ecosystem}}/all.zip"
    server.shutdown()


def test_scan_update_fills_the_database_and_fails_clearly_without_network(
        tmp_path: Path, osv_server: str) -> None:
    folder = tmp_path / "app"
    scan_app(folder, f'db = "osv"\nupdate_url = "{osv_server}"')
    done = headway(folder, "scan", "--update", "--ecosystem", "PyPI")
    assert done.returncode == 0, done.stderr
    assert f"PyPI {len(list(OSV.glob('*.json')))} advisories" in done.stdout
    assert {p.name for p in (folder / "osv" / "PyPI").iterdir()} == {
        p.name for p in OSV.glob("*.json")}
    jinja = Package("pypi", "Jinja2", "2.10", purl("pypi", "Jinja2", "2.10"))
    assert JINJA in {f.id for f in scan.scan([jinja], folder / "osv", []).findings}
    # a zip database is rewritten as one zip
    assert scan.update(folder / "osv.zip", osv_server, ("PyPI",)) == {"PyPI": 4}
    assert JINJA in {f.id for f in scan.scan([jinja], folder / "osv.zip", []).findings}
    # no network to the export (here: a closed port): exit 6, the URL named, db unchanged
    closed = f"http://127.0.0.1:{free_port()}/{{ecosystem}}/all.zip"
    scan_app(folder, f'db = "osv"\nupdate_url = "{closed}"')
    offline = headway(folder, "scan", "--update", "--ecosystem", "PyPI")
    assert offline.returncode == 6, offline.stderr
    assert "scan --update: cannot download " + closed.replace("{ecosystem}", "PyPI") in \
        offline.stderr
    assert "left as it was" in offline.stderr and (folder / "osv" / "PyPI").is_dir()
    with pytest.raises(ConfigError, match="scan.update_url"):
        parse_spec('[app]\nname = "a"\n[processes.web]\ncommand = "x"\n[scan]\n'
                   'update_url = "ftp://mirror/all.zip"\n')


def test_a_database_older_than_max_age_is_warned_about(tmp_path: Path) -> None:
    folder = tmp_path / "app"
    scan_app(folder, 'db = "osv"\nmax_age = "7d"')
    shutil.copytree(OSV, folder / "osv")
    old = (dt.datetime.now() - dt.timedelta(days=10)).timestamp()
    for advisory in (folder / "osv").iterdir():
        os.utime(advisory, (old, old))
    stale = headway(folder, "scan")
    assert "warning: [scan] db" in stale.stderr and "10.0 days old" in stale.stderr
    assert "max_age (7 days)" in stale.stderr and "headway scan --update" in stale.stderr
    assert stale.returncode == 7  # then: no release to scan, as without max_age
    fresh = tmp_path / "fresh"
    scan_app(fresh, 'db = "osv"\nmax_age = "7d"')
    shutil.copytree(OSV, fresh / "osv")
    assert "warning" not in headway(fresh, "scan").stderr
