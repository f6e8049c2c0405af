"""External secret sources: `[secrets] NAME = "env:VAR"` or `"file:/path"`. A deploy reads
each one and stores the value in the secret store when it changed, so the release pins it like
any other secret. Another backend (HashiCorp Vault, a cloud key vault) is one more `Source`
registered in SOURCES under its scheme."""

from __future__ import annotations

import os
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


SOURCES: dict[str, Source] = {"env": EnvSource(), "file": FileSource()}


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
        if name not in current or current[name].reveal() != value.reveal():
            vault.set(app, env, name, value)
            changed.append(name)
    return changed
