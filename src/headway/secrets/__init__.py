"""Secrets: encrypted at rest in the store, injected into instances at start, never printed."""

from headway.secrets.vault import Secret, Vault, load_key, reveal_env, secrets_state

__all__ = ["Secret", "Vault", "load_key", "reveal_env", "secrets_state"]
