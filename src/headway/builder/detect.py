"""Detect how an app is built and started from its files, for `headway init`, `headway build`
and every deploy: the language (python.py, node.py), or a Containerfile/Dockerfile used as is;
the runtime version the project declares; the web command. A command configured in
headway.toml always wins: detection only fills the gaps. Reads files only; never runs the app.
Commands listen on $HOST:$PORT, which Headway sets (127.0.0.1 for processes, 0.0.0.0 in a
container)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from headway.builder import node, python
from headway.builder.common import Detected
from headway.errors import ConfigError

__all__ = ["Detected", "detect", "render_toml"]


def detect(folder: Path, *, command: str | None = None) -> Detected:
    """What the app in `folder` is. `command`: the web command from headway.toml, which wins
    over whatever would be detected (and makes a missing entrypoint no error)."""
    name = re.sub(r"[^a-z0-9-]+", "-", folder.resolve().name.lower()).strip("-") or "app"
    if not name[0].isalpha():
        name = f"app-{name}"
    own = next((f for f in ("Containerfile", "Dockerfile") if (folder / f).exists()), None)
    if (folder / "package.json").exists():
        found = node.detect(folder, name)
    elif any((folder / f).exists() for f in python.MARKERS):
        found = python.detect(folder, name)
    elif own:
        return Detected(name, command or "", f"{own}, used as is", "container", "", "none", own,
                        [f"{own} found: built as is"])
    else:
        raise ConfigError(f"{folder}: no app found (looked for package.json, "
                          f"{', '.join(python.MARKERS)}, Containerfile, Dockerfile)",
                          hint="write headway.toml by hand: [processes.web] command = \"...\"")
    if command:
        found = dataclasses.replace(found, command=command, reasons=[
            *found.reasons, f"command: {command} (from headway.toml)"])
    if own:
        return dataclasses.replace(
            found, explain=f"{found.explain}; {own} used as is", containerfile=own,
            reasons=[*found.reasons, f"{own} found: built as is instead of a generated one"])
    if not found.command:
        raise ConfigError(f"{folder}: {found.explain}",
                          hint="set it in headway.toml: [processes.web] command = \"...\"")
    return found


def render_toml(found: Detected, *, port: int) -> str:
    command = found.command or "# the image's own CMD is not used: set the command here"
    return f'''# headway.toml, written by `headway init` ({found.explain}).
# Reference: every key, its type and default, is in the README ("Config reference").

[app]
name = "{found.name}"
runtime = "auto"             # auto | process | podman | docker | kubernetes

[processes.web]              # the process that receives HTTP traffic; gets $HOST and $PORT
command = "{command}"
replicas = 2

[processes.web.health]
path = "/up"                 # must answer 2xx when the instance can serve
# interval = "1s"
# timeout = "2s"
# healthy_threshold = 2

[deploy]
strategy = "blue-green"      # rolling | blue-green | canary
# timeout = "60s"            # a release not healthy within this fails
# drain_timeout = "30s"
# keep_previous = "10m"      # previous release stays warm: rollback is a traffic switch

[router]
port = {port}                # where users' HTTP traffic arrives

[env]
# LOG_LEVEL = "info"
# [env.staging]              # overrides for `--env staging`
# LOG_LEVEL = "debug"
'''
