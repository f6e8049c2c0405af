"""The one place that executes commands. Drivers build argv lists; this runs them. No shell."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

from headway.errors import HeadwayError, RuntimeFailure


def run(argv: list[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None,
        timeout: float | None = 600, error: type[HeadwayError] = RuntimeFailure,
        what: str | None = None) -> str:
    """Run argv, return its stdout; on failure raise `error` with the tail of its output."""
    try:
        proc = subprocess.run(argv, cwd=cwd, env=env, timeout=timeout, capture_output=True,
                              text=True, check=False)
    except FileNotFoundError as exc:
        raise error(f"{argv[0]}: command not found", hint="install it, or check PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise error(f"{what or argv[0]} took longer than {timeout:.0f}s") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise error(f"{what or ' '.join(argv[:3])} failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout
