"""The secret store. Values are AES-256-GCM encrypted, each bound to its app, environment,
name and version as associated data, under a master key from HEADWAY_MASTER_KEY (base64 of 32
bytes) or a 0600 key file created on first use. Values only exist in clear inside `Secret`,
which prints as [REDACTED]; they are decrypted where an instance starts and nowhere else.
Every change is a new version, so a release pins the values it was deployed with.
A key rotation writes the new key beside the old one before re-encrypting, so a crash at any
point leaves a key that opens the store: the next load keeps whichever of the two does."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from headway.errors import ConfigError, NotFound
from headway.store import Store

KEY_ENV = "HEADWAY_MASTER_KEY"
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Secret:
    """A secret value that cannot print, format or pickle itself; `reveal()` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('[REDACTED]')"

    def __str__(self) -> str:
        return "[REDACTED]"

    def __format__(self, spec: str) -> str:
        return "[REDACTED]"

    def __reduce__(self) -> str:
        raise TypeError("a Secret cannot be pickled")


def load_key(home: Path, *, create: bool = True) -> bytes:
    """The master key: $HEADWAY_MASTER_KEY, else home/master.key (made 0600 if missing)."""
    if os.environ.get(KEY_ENV):
        try:
            key = base64.b64decode(os.environ[KEY_ENV], validate=True)
        except binascii.Error:
            key = b""
        if len(key) != 32:
            raise ConfigError(f"{KEY_ENV}: not the base64 of 32 bytes",
                              hint="make one with: head -c32 /dev/urandom | base64")
        return key
    path = home / "master.key"
    if (home / NEW_KEY).exists():
        _finish_rotation(home)
    if not path.exists():
        if not create:
            raise NotFound(f"no master key: neither {KEY_ENV} nor {path}")
        write_key(path, AESGCM.generate_key(bit_length=256))
    if path.stat().st_mode & 0o777 != 0o600 and path.stat().st_uid == os.geteuid():
        path.chmod(0o600)  # whatever mode it was given since: the app users must not read it
    return base64.b64decode(path.read_bytes())


NEW_KEY = "master.key.new"  # a rotation's key, written before any secret is re-encrypted


def write_key(path: Path, key: bytes) -> None:
    """Atomically and durably, never readable by others, not even for an instant."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64encode(key))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename or new file in `folder` durable (the directory entry itself)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rotate_key(store: Store) -> int:
    """A new master key for every secret on this host; how many values were re-encrypted.
    Order: new key to master.key.new (durable), re-encrypt in one transaction, swap the files.
    A crash before the commit leaves the old key opening the store, after it the new one;
    `load_key` sees master.key.new and keeps whichever opens it."""
    old = load_key(store.home)
    new = AESGCM.generate_key(bit_length=256)
    write_key(store.home / NEW_KEY, new)
    try:
        count = Vault(store, old).rotate(new)
    except ConfigError:
        (store.home / NEW_KEY).unlink()  # rolled back: the old key stays the key
        raise
    os.replace(store.home / NEW_KEY, store.home / "master.key")
    fsync_dir(store.home)
    return count


def _finish_rotation(home: Path) -> None:
    """An interrupted rotation: keep the key that opens the store, drop the other."""
    path, new_path = home / "master.key", home / NEW_KEY
    new = base64.b64decode(new_path.read_bytes())
    if path.exists() and not _opens(home, new):
        new_path.unlink()  # died before the commit: the old key still opens everything
    else:
        os.replace(new_path, path)
    fsync_dir(home)


def _opens(home: Path, key: bytes) -> bool:
    """Whether `key` decrypts a stored secret (True when there is none to try)."""
    store = Store(home)
    try:
        rows = store.q("SELECT * FROM secrets WHERE ciphertext IS NOT NULL LIMIT 1")
    finally:
        store.db.close()
    for row in rows:
        aad = f"{row['app']}/{row['env']}/{row['name']}/{row['version']}".encode()
        try:
            AESGCM(key).decrypt(row["nonce"], row["ciphertext"], aad)
        except InvalidTag:
            return False
    return True


class Vault:
    def __init__(self, store: Store, key: bytes) -> None:
        self.store, self.aead, self.key = store, AESGCM(key), key

    def set(self, app: str, env: str, name: str, value: Secret) -> int:
        if not NAME.match(name):
            raise ConfigError(f"secret name {name!r}: letters, digits and _, e.g. API_TOKEN")
        return self._write(app, env, name, value.reveal())

    def unset(self, app: str, env: str, name: str) -> int:
        if name not in self.names(app, env):
            raise NotFound(f"no secret {name} for {app} ({env})")
        return self._write(app, env, name, None)

    def names(self, app: str, env: str) -> list[str]:
        return sorted(self._latest(app, env, None))

    def version(self, app: str, env: str) -> int:
        rows = self.store.q("SELECT MAX(version) FROM secrets WHERE app=? AND env=?", app, env)
        return int(rows[0][0] or 0)

    def values(self, app: str, env: str, version: int | None = None) -> dict[str, Secret]:
        """The secrets as they were at `version` (default: now), decrypted."""
        out = {}
        for name, row in self._latest(app, env, version).items():
            aad = f"{app}/{env}/{name}/{row['version']}".encode()
            try:
                out[name] = Secret(self.aead.decrypt(row["nonce"], row["ciphertext"], aad).decode())
            except InvalidTag:
                raise ConfigError(f"secret {name} of {app} ({env}) does not decrypt with this "
                                  "master key", hint=f"set {KEY_ENV} to the key it was set "
                                  "with, or set the secret again") from None
        return out

    def fingerprint(self, app: str, env: str) -> str:
        """Changes when any value changes; reveals nothing (keyed HMAC)."""
        mac = hmac.new(self.key, digestmod=hashlib.sha256)
        for name, value in sorted(self.values(app, env).items()):
            mac.update(f"{name}\0{len(value.reveal())}\0".encode() + value.reveal().encode())
        return mac.hexdigest()

    def rotate(self, new_key: bytes) -> int:
        """Re-encrypt every stored value under new_key (one transaction); returns how many."""
        new = AESGCM(new_key)
        rows = self.store.q("SELECT * FROM secrets WHERE ciphertext IS NOT NULL")
        with self.store.tx() as db:
            for row in rows:
                aad = f"{row['app']}/{row['env']}/{row['name']}/{row['version']}".encode()
                try:
                    plain = self.aead.decrypt(row["nonce"], row["ciphertext"], aad)
                except InvalidTag:
                    raise ConfigError(f"secret {row['name']} of {row['app']} ({row['env']}) does "
                                      "not decrypt with this master key: nothing was rotated",
                                      hint=f"set {KEY_ENV} to the key it was set with") from None
                nonce = os.urandom(12)
                db.execute("UPDATE secrets SET nonce=?, ciphertext=? WHERE app=? AND env=? AND "
                           "name=? AND version=?", (nonce, new.encrypt(nonce, plain, aad),
                                                    row["app"], row["env"], row["name"],
                                                    row["version"]))
        self.aead, self.key = new, new_key
        return len(rows)

    def _write(self, app: str, env: str, name: str, plain: str | None) -> int:
        with self.store.tx() as db:
            (last,) = db.execute("SELECT COALESCE(MAX(version), 0) FROM secrets WHERE app=? "
                                 "AND env=?", (app, env)).fetchone()
            version, nonce = last + 1, os.urandom(12)
            aad = f"{app}/{env}/{name}/{version}".encode()
            sealed = None if plain is None else self.aead.encrypt(nonce, plain.encode(), aad)
            db.execute("INSERT INTO secrets VALUES(?,?,?,?,?,?)",
                       (app, env, name, version, nonce, sealed))
        return int(version)

    def _latest(self, app: str, env: str, version: int | None) -> dict[str, Any]:
        rows = self.store.q("SELECT * FROM secrets WHERE app=? AND env=? AND version<=? "
                            "ORDER BY version", app, env, version if version is not None else 2**62)
        latest = {row["name"]: row for row in rows}
        return {k: v for k, v in latest.items() if v["ciphertext"] is not None}


def secrets_state(store: Store, app: str, env: str) -> dict[str, object]:
    """What a release records of its secrets: the version, and a keyed fingerprint that changes
    with any value (so a change makes a new release) and reveals none."""
    vault_version = store.q("SELECT MAX(version) FROM secrets WHERE app=? AND env=?", app, env)
    version = int(vault_version[0][0] or 0)
    if not version:
        return {"version": 0}
    vault = Vault(store, load_key(store.home, create=False))
    return {"version": version, "fingerprint": vault.fingerprint(app, env)}


def reveal_env(store: Store, app: str, env: str, version: int) -> dict[str, str]:
    """The secrets pinned at `version`, in clear, for a child process's environment only."""
    if not version:
        return {}
    vault = Vault(store, load_key(store.home, create=False))
    return {k: v.reveal() for k, v in vault.values(app, env, version).items()}
