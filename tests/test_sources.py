"""Secret sources read at each deploy: a generated signing key is made once and kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from headway.errors import ConfigError
from headway.secrets import Vault, load_key
from headway.secrets.sources import sync
from headway.store import Store


def test_a_generated_secret_is_made_once_and_never_replaced(tmp_path: Path) -> None:
    store = Store(tmp_path / "home")
    refs = {"SECRET_KEY": "generate:50"}
    assert sync(store, "shop", "production", refs) == ["SECRET_KEY"]
    vault = Vault(store, load_key(store.home))
    first = vault.values("shop", "production")["SECRET_KEY"].reveal()
    assert len(first) == 50 and first.isalnum()
    assert sync(store, "shop", "production", refs) == []  # the next deploy keeps it
    assert vault.values("shop", "production")["SECRET_KEY"].reveal() == first
    assert sync(store, "shop", "staging", refs) == ["SECRET_KEY"]  # each environment its own
    assert vault.values("shop", "staging")["SECRET_KEY"].reveal() != first


@pytest.mark.parametrize("length", ["x", "8", "9999"])
def test_a_bad_length_names_the_key(tmp_path: Path, length: str) -> None:
    with pytest.raises(ConfigError) as err:
        sync(Store(tmp_path / "home"), "shop", "production", {"KEY": f"generate:{length}"})
    assert err.value.message.startswith(f"secrets.KEY = 'generate:{length}'")
