"""Signed images, from the CLI, with real podman, gpg and a real OCI registry on loopback
(test_containers' fixture): `headway build --push --sign` signs with [registry] sign_by and
verifies what it pushed; an image re-pushed over the tag without a signature is refused; a
deploy whose image is signed by another key than [registry] verify_key is refused before
anything starts. Throwaway GPG keys live in a GNUPGHOME under /tmp made by the test. The app
image is FROM scratch (one small file), so pushes take a second."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from headway.errors import ConfigError, RuntimeFailure
from headway.spec.load import parse_spec
from headway.spec.models import RegistrySpec
from headway.supply import sign
from tests.conftest import App
from tests.test_containers import REGISTRY_PASSWORD, podman, registry  # noqa: F401 - fixture

TRUSTED, OTHER = "release@headway.test", "intruder@headway.test"


@pytest.fixture
def gnupg(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Two keys without passphrase in a short GNUPGHOME (gpg-agent's socket path is short);
    name -> fingerprint. GNUPGHOME reaches the CLI the tests run through os.environ."""
    home = tempfile.mkdtemp(prefix="hw-gpg-", dir="/tmp")
    os.chmod(home, 0o700)
    monkeypatch.setenv("GNUPGHOME", home)
    keys = {}
    for uid in (TRUSTED, OTHER):
        subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", uid, "ed25519",
                        "sign", "never"], check=True, capture_output=True)
        listed = subprocess.run(["gpg", "--batch", "--with-colons", "--list-keys", uid],
                                check=True, capture_output=True, text=True).stdout
        keys[uid] = next(line.split(":")[9] for line in listed.splitlines()
                         if line.startswith("fpr:"))
    yield keys
    subprocess.run(["gpgconf", "--kill", "all"], capture_output=True, check=False)
    shutil.rmtree(home, ignore_errors=True)


def test_policy_scopes_the_repository_and_rejects_anything_else(tmp_path: Path) -> None:
    key = tmp_path / "k.asc"
    policy = sign.policy([sign.scope("127.0.0.1:5000/shop:production-3"),
                          sign.scope("127.0.0.1:5000/shop@sha256:ab")], key)
    assert policy == {"default": [{"type": "reject"}], "transports": {"docker": {
        "127.0.0.1:5000/shop": [{"type": "signedBy", "keyType": "GPGKeys",
                                 "keyPath": str(key)}]}}}
    signing = RegistrySpec(server="127.0.0.1:5000", sign_by="ABCD")
    assert sign.push_flags(signing) == ["--sign-by", "ABCD"]
    assert sign.push_flags(RegistrySpec(server="r")) == []
    with pytest.raises(ConfigError, match="image signing needs podman"):
        sign.before_push("/usr/bin/docker", signing)
    with pytest.raises(ConfigError, match="registry.verify = true, but registry.sign_by"):
        sign.before_push("podman", RegistrySpec(server="r", verify=True))
    with pytest.raises(ConfigError, match="add --push"):
        sign.require(signing, push=False, sign=True, config=Path("headway.toml"))
    with pytest.raises(ConfigError, match=r"--sign needs \[registry\] sign_by"):
        sign.require(RegistrySpec(server="r"), push=True, sign=True, config=Path("h.toml"))
    with pytest.raises(ConfigError, match="registry.verify_key") as bad:
        parse_spec('[app]\nname = "a"\n[processes.web]\ncommand = "x"\n'
                   '[registry]\nverify_key = "not-a-fingerprint"\n')
    assert "headway.toml" in bad.value.message


@pytest.mark.integration
def test_signed_push_verifies_and_tampered_or_foreign_images_are_refused(
        app: App, registry: str, gnupg: dict[str, str]) -> None:  # noqa: F811
    toml = app.dir / "headway.toml"
    toml.write_text(toml.read_text().replace('runtime = "process"', 'runtime = "podman"'))
    (app.dir / "Containerfile").write_text("FROM scratch\nCOPY VERSION /VERSION\n")
    base = f'server = "{registry}"\ntls_verify = false\nusername = "ci"'
    subprocess.run([sys.executable, "-m", "headway", "secrets", "set", "REGISTRY_PASSWORD"],
                   input=REGISTRY_PASSWORD, cwd=app.dir, env=app.env(), check=True,
                   capture_output=True, text=True)
    # a key this host does not have: refused before anything is built (exit 2, names it)
    app.configure(registry=f'{base}\nsign_by = "nobody@headway.test"')
    unknown = app.run("build", "--push", "--sign", check=False)
    assert unknown.returncode == 2 and "registry.sign_by: no secret key" in unknown.stderr

    # signed by the release key and verified against it
    app.configure(registry=f'sign_by = "{gnupg[TRUSTED]}"\nverify = true\n'
                  f'verify_key = "{gnupg[TRUSTED]}"')
    built = app.run("build", "--push", "--sign", timeout=300)
    assert "and pushed (signed)" in built.stdout, built.stderr
    assert list((app.home / "signatures").glob("hello@sha256=*/signature-1"))
    assert not Path("/etc/containers/registries.d/headway.yaml").exists()
    spec = RegistrySpec(server=registry, tls_verify=False, sign_by=gnupg[TRUSTED], verify=True,
                        verify_key=gnupg[TRUSTED])
    name = f"{registry}/hello:latest"
    sign.verify("podman", [name], spec, home=app.home)

    # tampered: another image pushed over the tag, unsigned
    tampered = app.dir.parent / "tampered"
    tampered.mkdir()
    (tampered / "x").write_text("not the release\n")
    (tampered / "Containerfile").write_text("FROM scratch\nCOPY x /x\n")
    podman("build", "-q", "-t", name, str(tampered))
    podman("push", "--tls-verify=false", name)
    with pytest.raises(RuntimeFailure, match="refused: its signature does not verify") as refused:
        sign.verify("podman", [name], spec, home=app.home)
    assert "it has no signature" in refused.value.message

    # a deploy whose image is signed by another key: refused, nothing started
    app.configure(registry=f'sign_by = "{gnupg[OTHER]}"')
    deploy = app.run("deploy", check=False, timeout=300)
    assert deploy.returncode == 6, deploy.stdout + deploy.stderr
    assert "is refused: its signature does not verify" in deploy.stderr
    assert f"signed by key {gnupg[OTHER]}, which is not trusted" in deploy.stderr
    assert "Nothing was started" in deploy.stderr
    assert podman("ps", "-aq", "--filter", f"label=headway.home={app.home}").strip() == ""
    assert [r["status"] for r in json.loads(app.run("releases", "--json").stdout)] == ["failed"]
