"""Headway's own errors. Library code raises these; only the CLI prints them and exits.

HeadwayError                 base: message, hint, exit_code
├── ConfigError              headway.toml (or an argument) is wrong: exit 2
├── LockedError              another command holds the app's lock: exit 3
├── StoreError               the store (state.db) is locked, full, corrupted or unreadable: exit 3
├── DeployFailed             a release did not become healthy; traffic stayed put: exit 4
├── RouterError              HAProxy is missing, will not start, or refused a command: exit 5
├── RuntimeFailure           an instance could not be built, started or stopped: exit 6
├── NotFound                 a release, app or process that does not exist: exit 7
└── ScanFailed               `headway scan` found advisories at [scan] fail_on: exit 8
"""

from __future__ import annotations


class HeadwayError(Exception):
    """Base of every error Headway reports to a user."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class ConfigError(HeadwayError):
    """The config file or a command-line argument is invalid."""

    exit_code = 2


class LockedError(HeadwayError):
    """Another headway command holds the lock this one needs."""

    exit_code = 3


class StoreError(HeadwayError):
    """The store could not be read or written (locked too long, disk full, corrupted)."""

    exit_code = 3


class DeployFailed(HeadwayError):
    """A deploy failed; traffic stayed on (or went back to) the last good release."""

    exit_code = 4

    def __init__(self, message: str, *, hint: str | None = None, log_tail: str = "") -> None:
        super().__init__(message, hint=hint)
        self.log_tail = log_tail


class RouterError(HeadwayError):
    """HAProxy is missing, failed to start, or rejected a runtime-API command."""

    exit_code = 5


class RuntimeFailure(HeadwayError):
    """An instance or a release artifact could not be built, started or stopped."""

    exit_code = 6


class NotFound(HeadwayError):
    """The named app, release or process does not exist."""

    exit_code = 7


class ScanFailed(HeadwayError):
    """`headway scan` found vulnerabilities at or above [scan] fail_on."""

    exit_code = 8
