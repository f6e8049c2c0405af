"""Runtimes: where instances run. `process` is the embedded default (supervised by the agent)."""
