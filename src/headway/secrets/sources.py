"""Secret sources: `[secrets] NAME = "env:VAR"` or `"file:/path"`, read at each deploy and
stored in the secret store when the value changed, so the release pins it like any other
secret; `"generate:LENGTH"` makes a random value once (a signing key such as Django's
SECRET_KEY) and keeps it. Another backend (HashiCorp Vault, a cloud key vault) is one more
`Source` registered in SOURCES under its scheme."""

from __future__ import annotations

import os
import secrets
import string
from pathlib import Path
from typing import Protocol

from headway.errors import ConfigError
from headway.secrets.vault import Secret, Vault, load_key
from headway.store import Store


class Source(Protocol):
    def fetch(self, ref: str) -> Secret:
        """The value `ref` names; ConfigError (saying what was looked for) if there is none."""
        ...


class EnvSource:
    def fetch(self, ref: str) -> Secret:
        value = os.environ.get(ref)
        if not value:
            raise ConfigError(f"environment variable {ref} is not set (or empty)")
        return Secret(value)


class FileSource:
    def fetch(self, ref: str) -> Secret:
        try:
            value = Path(ref).read_text().removesuffix("\n")
        except OSError as exc:
            raise ConfigError(f"{ref}: {exc.strerror}") from None
        if not value:
            raise ConfigError(f"{ref} is empty")
        return Secret(value)


class GenerateSource:
    """A random value of LENGTH letters and digits, made once: `sync` keeps the stored one."""

    ALPHABET = string.ascii_letters + string.digits

    def fetch(self, ref: str) -> Secret:
        if not ref.isdigit() or not 16 <= int(ref) <= 256:
            raise ConfigError(f"{ref!r} is not a length from 16 to 256, e.g. \"generate:50\"")
        return Secret("".join(secrets.choice(self.ALPHABET) for _ in range(int(ref))))


SOURCES: dict[str, Source] = {"env": EnvSource(), "file": FileSource(),
                              "generate": GenerateSource()}
KEPT = {"generate"}  # made once; never replaced by a new value


def sync(store: Store, app: str, env: str, refs: dict[str, str]) -> list[str]:
    """Copy each source's current value into the secret store; the names that changed."""
    if not refs:
        return []
    vault = Vault(store, load_key(store.home))
    current = vault.values(app, env)
    changed = []
    for name, ref in refs.items():
        scheme, _, where = ref.partition(":")
        if scheme not in SOURCES:
            raise ConfigError(f"secrets.{name} = {ref!r}: no source {scheme!r} (available: "
                              f"{', '.join(SOURCES)})")
        try:
            value = SOURCES[scheme].fetch(where)
        except ConfigError as exc:
            raise ConfigError(f"secrets.{name} = {ref!r}: {exc.message}") from None
        if scheme in KEPT and name in current:
            continue
        if name not in current or current[name].reveal() != value.reveal():
            vault.set(app, env, name, value)
            changed.append(name)
    return changed
