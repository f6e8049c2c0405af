"""Image signatures with podman's own simple signing (GPG). Pushes Headway makes are signed
with `[registry] sign_by` (`podman push --sign-by`); the signatures go to a lookaside folder,
$HEADWAY_HOME/signatures, named in a registries.d file Headway writes under
$HEADWAY_HOME/signing/home (podman reads registries.d from $HOME/.config/containers, so the
podman commands run here get HOME pointed there, GNUPGHOME kept). `[registry] verify`: the
pushed image is pulled back through Headway's own policy.json (signedBy the verify key for
that repository, reject for anything else; `--signature-policy`), so a missing, tampered or
foreign signature refuses the image before anything starts. The machine's
/etc/containers/policy.json and registries.d are never read nor written. Builds argv and
config files; never prints, never holds a private key (gpg and podman do)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from headway.errors import ConfigError, RuntimeFailure
from headway.spec.models import RegistrySpec

POLICY = "policy.json"
REGISTRIES_D = Path(".config/containers/registries.d")


def folder(home: Path) -> Path:
    return home / "signing"


def lookaside(home: Path) -> Path:
    return home / "signatures"


def scope(name: str) -> str:
    """registry/repository of an image name (its tag or digest dropped)."""
    name = name.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


def gnupg_home() -> str:
    return os.environ.get("GNUPGHOME") or str(Path.home() / ".gnupg")


def podman_env(home: Path, registry: RegistrySpec) -> dict[str, str]:
    """The environment for podman push/pull: HOME where Headway's registries.d is, the
    user's GnuPG home and XDG folders kept as they were."""
    fake = folder(home) / "home"
    conf = fake / REGISTRIES_D
    conf.mkdir(parents=True, exist_ok=True)
    store = lookaside(home)
    store.mkdir(parents=True, exist_ok=True)
    (conf / "headway.yaml").write_text(
        f"# Written by Headway: where podman keeps and finds the signatures of "
        f"{registry.server}'s images\ndocker:\n  {json.dumps(registry.server)}:\n"
        f"    lookaside: {json.dumps(store.resolve().as_uri())}\n")
    real = Path.home()
    env = dict(os.environ)
    env.update(HOME=str(fake), GNUPGHOME=gnupg_home(),
               XDG_CONFIG_HOME=os.environ.get("XDG_CONFIG_HOME") or str(real / ".config"),
               XDG_DATA_HOME=os.environ.get("XDG_DATA_HOME") or str(real / ".local/share"))
    return env


def require(registry: RegistrySpec, *, push: bool, sign: bool, config: Path) -> None:
    """Before `headway build` builds anything: --sign needs --push and [registry] sign_by
    (which signs every push); a push that signs or verifies needs a key that can sign."""
    if sign and not push:
        raise ConfigError("--sign signs the pushed image: add --push")
    if sign and not registry.sign_by:
        raise ConfigError(f"{config}: --sign needs [registry] sign_by, the GPG key that signs "
                          "the pushed image", hint='sign_by = "FINGERPRINT" (`gpg '
                          "--list-secret-keys` shows the keys of this host)")
    if push:
        _can_sign(registry)


def secret_key(registry: RegistrySpec) -> None:
    """sign_by names a secret key in the keyring podman will use."""
    gpg = shutil.which("gpg")
    if gpg is None:
        raise ConfigError("registry.sign_by: gpg is not installed", hint="apt-get install gpg")
    done = subprocess.run([gpg, "--batch", "--list-secret-keys", "--with-colons",
                           registry.sign_by or ""], capture_output=True, text=True, check=False,
                          env={**os.environ, "GNUPGHOME": gnupg_home()})
    if done.returncode != 0 or "\nsec:" not in f"\n{done.stdout}":
        raise ConfigError(f"registry.sign_by: no secret key {registry.sign_by!r} in the GPG "
                          f"keyring {gnupg_home()}", hint="gpg --list-secret-keys shows the "
                          "keys there; GNUPGHOME chooses another keyring")


def push_flags(registry: RegistrySpec) -> list[str]:
    """What `podman push` adds to sign: nothing unless [registry] sign_by is set."""
    return ["--sign-by", registry.sign_by] if registry.sign_by else []


def push_env(registry: RegistrySpec) -> dict[str, str] | None:
    """The push's environment: Headway's registries.d when it signs, else the caller's."""
    from headway.store import home_dir

    return podman_env(home_dir(), registry) if registry.sign_by else None


def before_push(binary: str, registry: RegistrySpec) -> None:
    """Refuse, before anything is pushed, what cannot sign or verify: docker (no simple
    signing), verify without sign_by, a sign_by key that is not in the keyring."""
    if not (registry.sign_by or registry.verify):
        return
    if Path(binary).name.startswith("docker"):
        raise ConfigError("registry.sign_by / registry.verify: image signing needs podman "
                          "(podman push --sign-by); docker pushes cannot be signed by Headway",
                          hint='set [build] engine = "podman", or remove sign_by and verify')
    _can_sign(registry)


def _can_sign(registry: RegistrySpec) -> None:
    if registry.verify and not registry.sign_by:
        raise ConfigError("registry.verify = true, but registry.sign_by is not set: the image "
                          "this host pushes would be unsigned and refused",
                          hint='sign_by = "FINGERPRINT" (a secret key in this host\'s keyring)')
    if registry.sign_by:
        secret_key(registry)


def after_push(binary: str, names: list[str], registry: RegistrySpec) -> None:
    """[registry] verify: the pushed names, pulled back, must verify and be the local image."""
    if not registry.verify or not names:
        return
    from headway.store import home_dir

    local = subprocess.run([binary, "image", "inspect", "--format", "{{.Id}}", names[0]],
                           capture_output=True, text=True, check=False).stdout.strip()
    verify(binary, names, registry, home=home_dir(), image_id=local or None)


def trusted_key(home: Path, registry: RegistrySpec) -> Path:
    """The public key(s) signatures must verify against, exported from the keyring: verify_key
    (a fingerprint), else sign_by's."""
    key = registry.verify_key or registry.sign_by
    if not key:
        raise ConfigError("registry.verify = true needs registry.verify_key (the signing key's "
                          "fingerprint) or registry.sign_by")
    done = subprocess.run(["gpg", "--batch", "--export", "--armor", key], capture_output=True,
                          text=True, check=False, env={**os.environ, "GNUPGHOME": gnupg_home()})
    if done.returncode != 0 or "BEGIN PGP PUBLIC KEY BLOCK" not in done.stdout:
        which = "verify_key" if registry.verify_key else "sign_by"
        raise ConfigError(f"registry.{which}: no public key {key!r} in the GPG keyring "
                          f"{gnupg_home()}", hint="import it: gpg --import KEY.asc")
    path = folder(home) / f"trusted-{re.sub(r'[^A-Za-z0-9]+', '_', key)[:60]}.asc"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(done.stdout)
    return path


def policy(scopes: list[str], key: Path) -> dict[str, object]:
    """Headway's own policy: these repositories need a signature by `key`; nothing else is
    accepted through it."""
    rule = [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(key)}]
    return {"default": [{"type": "reject"}],
            "transports": {"docker": {s: rule for s in sorted(set(scopes))}}}


def verify(binary: str, names: list[str], registry: RegistrySpec, *, home: Path,
           image_id: str | None = None) -> None:
    """Pull each name back through Headway's policy: RuntimeFailure, naming the image and
    podman's reason, unless its signature verifies (and it is `image_id`, when given)."""
    key = trusted_key(home, registry)
    path = folder(home) / POLICY
    path.write_text(json.dumps(policy([scope(n) for n in names], key), indent=2) + "\n")
    env = podman_env(home, registry)
    for name in names:
        argv = [binary, "pull", "--quiet", "--signature-policy", str(path)]
        if not registry.tls_verify:
            argv.append("--tls-verify=false")
        done = subprocess.run([*argv, name], capture_output=True, text=True, env=env,
                              timeout=900, check=False)
        if done.returncode != 0:
            reason = _reason(done.stderr)
            raise RuntimeFailure(
                f"image {name} is refused: its signature does not verify ({reason})",
                hint=f"[registry] verify = true trusts signatures by "
                f"{registry.verify_key or registry.sign_by} only; push it signed (`headway "
                "build --push --sign`, [registry] sign_by). Nothing was started.")
        pulled = done.stdout.strip().splitlines()[-1:] or [""]
        if image_id and not image_id.startswith(pulled[0]) and not pulled[0].startswith(image_id):
            raise RuntimeFailure(f"image {name} is refused: the registry holds another image "
                                 f"under that name ({pulled[0][:12]}, not {image_id[:12]})",
                                 hint="something pushed over it; push again. Nothing was "
                                 "started.")


def _reason(stderr: str) -> str:
    """podman's refusal in a few words: no signature, a signature by an untrusted key (its
    fingerprint), or podman's own last line."""
    if "no signature exists" in stderr:
        return "it has no signature"
    foreign = re.search(r'Invalid GPG signature.*?Fingerprint:"([0-9A-F]+)"', stderr,
                        re.DOTALL)
    if foreign:
        return f"signed by key {foreign.group(1)}, which is not trusted"
    lines = [line.removeprefix("Error: ").strip() for line in stderr.splitlines()
             if line.strip() and not line.startswith("Trying to pull")]
    return (lines[-1] if lines else "podman pull failed")[:300]
