"""What detection found, and the pieces every language shares: the address and port a
container listens on, and a command in exec form. Reads nothing, runs nothing."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

PORT = 8080
HOST = "0.0.0.0"


@dataclass(frozen=True)
class Detected:
    name: str
    command: str  # "" when nothing runnable was found (a configured command may fill it)
    explain: str
    language: str = "python"  # python | node | bun | container
    version: str = ""
    installer: str = "pip"  # pip | uv | poetry | pipenv | pdm | npm | pnpm | yarn | bun | none
    containerfile: str | None = None  # an existing Containerfile/Dockerfile, used as is
    reasons: list[str] = field(default_factory=list)
    build: list[str] = field(default_factory=list)  # run after installing, dev deps present
    version_range: str = ""  # the declared range, e.g. ">=20" or "20.x"; "" = none declared
    version_from: str = ""  # where it was declared, e.g. ".nvmrc (v20.11.1)", "engines.node"
    installer_version: str = ""  # pnpm / yarn / bun version to install, e.g. "9", "1.22.22"
    dev_install: bool = False  # an install script of the app's runs a dev dependency (husky)
    native: list[str] = field(default_factory=list)  # dependencies node-gyp compiles


def exec_form(command: str) -> str:
    """The web command as a JSON array, $HOST and $PORT replaced by the container's."""
    words = [re.sub(r"\$\{?(HOST|PORT)\}?", lambda m: HOST if m.group(1) == "HOST" else str(PORT),
                    w) for w in shlex.split(command)]
    return json.dumps(words)


def read(path: Path) -> str:
    return path.read_text(errors="replace") if path.is_file() else ""
