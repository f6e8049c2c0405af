"""Node and Bun apps: how they are recognised (package.json with npm / pnpm / yarn, Bun by
bun.lock(b)), the version they declare, their web command, and the Node stages of a generated
Containerfile. Reads files only."""

from __future__ import annotations

import json
import re
from pathlib import Path

from headway.builder.common import HOST, PORT, Detected, exec_form, read
from headway.errors import ConfigError

DEFAULT, BUN_DEFAULT = "22", "1"


def detect(folder: Path, name: str) -> Detected:
    package = folder / "package.json"
    try:
        pkg = json.loads(package.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{package}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    bun = any((folder / f).exists() for f in ("bun.lock", "bun.lockb"))
    installer = ("bun" if bun else "pnpm" if (folder / "pnpm-lock.yaml").exists() else
                 "yarn" if (folder / "yarn.lock").exists() else "npm")
    lock = {"bun": "bun.lock", "pnpm": "pnpm-lock.yaml", "yarn": "yarn.lock"}.get(
        installer, "package-lock.json" if (folder / "package-lock.json").exists()
        else "package.json")
    reasons = [f"dependencies: {lock} -> {installer}"]
    version, why = (BUN_DEFAULT, f"Bun {BUN_DEFAULT}") if bun else _version(folder, pkg)
    reasons.append(why)
    runner = "bun" if bun else "node"
    language = "bun" if bun else "node"
    start = pkg.get("scripts", {}).get("start")
    if start:
        # `node server.js` is run directly: npm would sit between the signal and the app
        direct = re.fullmatch(r"(node|bun)\s+[\w./-]+", start.strip())
        command = start.strip() if direct else f"{installer} run start"
        explain = f"the start script of package.json ({start!r})"
    elif pkg.get("main") or (folder / "index.js").exists():
        entry = pkg.get("main") or "index.js"
        command, explain = f"{runner} {entry}", f"package.json main: {entry}" \
            if pkg.get("main") else "index.js"
    else:
        return Detected(name, "", f"{package}: no start script, no main, no index.js", language,
                        version, installer, None, reasons)
    reasons.append(f"command: {command} ({explain}; it must listen on $PORT)")
    return Detected(name, command, f"{language.title()} app: {explain}", language, version,
                    installer, None, reasons)


def _version(folder: Path, pkg: dict[str, object]) -> tuple[str, str]:
    for dotfile in (".nvmrc", ".node-version"):
        if m := re.match(r"v?(\d+)", read(folder / dotfile).strip()):
            return m.group(1), f"Node {m.group(1)} from {dotfile}"
    engines = pkg.get("engines")
    wanted = engines.get("node") if isinstance(engines, dict) else None
    if isinstance(wanted, str) and (m := re.search(r"(\d+)", wanted)):
        return m.group(1), f"Node {m.group(1)} from engines.node {wanted!r}"
    return DEFAULT, f"Node {DEFAULT}: no version declared (default)"


# Containerfile --------------------------------------------------------------------------------
def stages(found: Detected, image: str) -> str:
    cache = "--mount=type=cache,target=/root/.npm"
    install = {
        "npm": ("COPY package.json package-lock.json* ./",
                (f"RUN {cache} if [ -f package-lock.json ]; then npm ci --omit=dev; "
                "else npm install --omit=dev; fi")),
        "pnpm": ("COPY package.json pnpm-lock.yaml ./",
                 ("RUN --mount=type=cache,target=/root/.local/share/pnpm corepack enable && "
                 "pnpm install --frozen-lockfile --prod")),
        "yarn": ("COPY package.json yarn.lock ./",
                 ("RUN --mount=type=cache,target=/usr/local/share/.cache/yarn corepack enable "
                 "&& yarn install --frozen-lockfile --production")),
        "bun": ("COPY package.json bun.lock* bun.lockb* ./",
                ("RUN --mount=type=cache,target=/root/.bun bun install --frozen-lockfile "
                "--production")),
    }[found.installer]
    user = "bun" if found.language == "bun" else "node"  # the official images' own user
    return f"""FROM {image} AS deps
WORKDIR /app
{install[0]}
{install[1]}

FROM {image}
ENV NODE_ENV=production HOST={HOST} PORT={PORT}
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY . .
USER {user}
EXPOSE {PORT}
CMD {exec_form(found.command)}
"""
