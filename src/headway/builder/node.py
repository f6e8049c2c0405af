"""Node and Bun apps: how they are recognised (package.json with npm / pnpm / yarn, Bun by
bun.lock(b)), the version they declare (.nvmrc, .node-version, .tool-versions, engines.node),
their build steps (scripts.build, prisma generate) and production web command (never a dev
server), the Node stages of a generated Containerfile, and `install`: the process runtime's
node_modules for a release folder. Detection reads files only; `install` runs the package
manager and the build in the release folder it is given, nowhere else."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

from headway.builder import semver
from headway.builder.common import HOST, PORT, Detected, exec_form, read
from headway.errors import ConfigError, RuntimeFailure
from headway.runner import run

DEFAULT, BUN_DEFAULT = "22", "1"
LTS = {"argon": 4, "boron": 6, "carbon": 8, "dubnium": 10, "erbium": 12, "fermium": 14,
       "gallium": 16, "hydrogen": 18, "iron": 20, "jod": 22, "krypton": 24}
LOCKS = {"bun": ("bun.lock", "bun.lockb"), "pnpm": ("pnpm-lock.yaml",), "yarn": ("yarn.lock",),
         "npm": ("package-lock.json", "npm-shrinkwrap.json")}
# Scripts that serve in development only: file watchers, hot reload, dev servers.
DEV = [(r"\bnodemon\b", "nodemon"), (r"--watch\b", "--watch"), (r"--hot\b", "--hot"),
       (r"\bnext\s+dev\b", "next dev"), (r"\bnx\s+serve\b", "nx serve"),
       (r"\bvite\b(?!\s+build)", "the Vite dev/preview server"),
       (r"\bts-node-dev\b|\btsnd\b", "ts-node-dev"), (r"\btsx\s+watch\b", "tsx watch"),
       (r"\bwebpack(-dev-server|\s+serve)\b", "webpack-dev-server"),
       (r"\breact-scripts\s+start\b", "react-scripts start"), (r"\bng\s+serve\b", "ng serve"),
       (r"\bvue-cli-service\s+serve\b", "vue-cli-service serve"),
       (r"\b(nuxt|nuxi|remix|astro|vite-node)\s+dev\b", "a framework dev server"),
       (r"\bgatsby\s+develop\b", "gatsby develop"),
       (r"\bnest\s+start\b(?!.*--prod)", "nest start (compiles at every start)")]
PRODUCTION_SCRIPTS = ("start", "start:prod", "start:production", "prod", "production", "serve",
                      "preview")
# Yarn 2+: the yarn npm installed (not .yarnrc.yml's yarnPath), and node_modules rather than
# Plug'n'Play, so that `node server.js` finds its packages (an app's own nodeLinker wins).
TOOL_PREFIX = "/opt/node-tools"  # images: where pnpm / yarn go (npm install -g --prefix)
BERRY = ("export YARN_IGNORE_PATH=1 && { grep -qs nodeLinker .yarnrc.yml || "
         "export YARN_NODE_LINKER=node-modules; } &&")
TS_ENTRIES = ("main", "index", "server", "app")
# Packages that compile a native addon at install time, and the helpers such packages
# depend on (node-gyp-build is left out: its packages ship their prebuilt binaries).
NATIVE = ("sqlite3", "better-sqlite3", "bcrypt", "argon2", "canvas", "pg-native", "libpq",
          "node-sass", "re2", "cpu-features")
GYP_HELPERS = {"node-gyp", "node-pre-gyp", "@mapbox/node-pre-gyp", "prebuild-install", "nan",
               "node-addon-api"}
ENV_PREFIX = re.compile(r"^(cross-env\s+)?(NODE_ENV=production\s+)+")


def detect(folder: Path, name: str) -> Detected:
    package = folder / "package.json"
    try:
        pkg = json.loads(package.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{package}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(pkg, dict):
        raise ConfigError(f"{package}: not a JSON object")
    installer = next((i for i, files in LOCKS.items() if any((folder / f).exists()
                                                              for f in files)), "npm")
    lock = next((f for f in LOCKS[installer] if (folder / f).exists()), "package.json")
    reasons = [f"dependencies: {lock} -> {installer}" +
               (" install (no lock file: versions are not pinned)" if lock == "package.json"
                else "")]
    tool = tool_version(folder, pkg, installer)
    if tool:
        reasons.append(f"{installer} {tool} (from the npm registry's {installer} package)")
    language = "bun" if installer == "bun" else "node"
    if language == "bun":
        version, wanted, source = tool.split(".")[0] or BUN_DEFAULT, "", ""
        reasons.append(f"Bun {version}: image oven/bun:{version}-slim")
    else:
        version, wanted, source = node_version(folder, pkg)
        reasons.append(f"Node {wanted} from {source}: image node:{version}-slim (the newest "
                       "line that satisfies it); the process runtime checks this machine's "
                       "node against it" if source else
                       f"Node {version}: no version declared (default; the process runtime "
                       "uses this machine's node)")
    build = _build_steps(folder, pkg, installer)
    reasons += [f"build: {step}" for step in build]
    dev_tool = _dev_lifecycle(pkg)
    if dev_tool:
        reasons.append(f"scripts.{dev_tool[0]} runs {dev_tool[1]}, a dev dependency: installed "
                       "with dev dependencies, which are dropped after")
    native = _native(folder, pkg, dev=bool(build or dev_tool))
    if native:
        reasons.append(f"{', '.join(native)}: compiled by node-gyp when no prebuilt binary "
                       "fits; the image's install stage gets python3, make and g++")
    command, explain = _command(folder, pkg, installer, bool(build))
    if command:
        reasons.append(f"command: {command} ({explain}; it must listen on $PORT)")
    return Detected(name, command, f"{language.title()} app: {explain}" if command else
                    f"{package}: {explain}", language, version, installer, None, reasons, build,
                    version_range=wanted, version_from=source, installer_version=tool,
                    dev_install=bool(dev_tool), native=native)


def _native(folder: Path, pkg: dict[str, object], *, dev: bool) -> list[str]:
    """The packages to install that compile native code with node-gyp (sqlite3, bcrypt...):
    package-lock.json's entries with an install script that depend on a node-gyp helper, and
    the well-known ones package.json names. Dev dependencies only when they are installed
    (`dev`: a build stage). The official slim images have no compiler, so `npm ci` fails
    there with "gyp ERR! find Python" whenever no prebuilt binary can be downloaded."""
    found = set(NATIVE) & set(_dict(pkg.get("dependencies")))
    if dev:
        found |= set(NATIVE) & set(_dict(pkg.get("devDependencies")))
    try:
        lock = json.loads(read(folder / "package-lock.json") or "{}")
    except json.JSONDecodeError:
        lock = {}
    for key, entry in _dict(_dict(lock).get("packages")).items():
        info = _dict(entry)
        if not key or not info.get("hasInstallScript") or (info.get("dev") and not dev):
            continue
        oses = [str(o) for o in info.get("os", []) or []]  # type: ignore[attr-defined]
        if "!linux" in oses or (any(not o.startswith("!") for o in oses) and "linux" not in oses):
            continue  # fsevents and the like: never installed here
        if set(_dict(info.get("dependencies"))) & GYP_HELPERS:
            found.add(key.rpartition("node_modules/")[2])
    return sorted(found)


def _dev_lifecycle(pkg: dict[str, object]) -> tuple[str, str] | None:
    """(script, package) when an install script of the app's own runs a dev dependency
    (`"prepare": "husky install"`): a production-only install would fail on it."""
    dev = set(_dict(pkg.get("devDependencies"))) - set(_dict(pkg.get("dependencies")))
    scripts = _scripts(pkg)
    for name in LIFECYCLE:
        for word in re.findall(r"[\w@/.-]+", scripts.get(name, "")):
            if word in dev:
                return name, word
    return None


def tool_version(folder: Path, pkg: dict[str, object], installer: str) -> str:
    """The pnpm / yarn / bun version to install: packageManager's, else the one the lock
    file's format asks for ("" for npm: the one that comes with node)."""
    manager = pkg.get("packageManager")
    if isinstance(manager, str) and manager.startswith(f"{installer}@"):
        return manager.split("@", 1)[1].split("+")[0]
    if installer == "pnpm":
        lock = re.search(r"lockfileVersion:\s*'?(\d+)", read(folder / "pnpm-lock.yaml"))
        return {"5": "7", "6": "8"}.get(lock.group(1) if lock else "", "9")
    if installer == "yarn":
        return "4" if "__metadata:" in read(folder / "yarn.lock") else "1"
    return BUN_DEFAULT if installer == "bun" else ""


# Version ----------------------------------------------------------------------------------------
def node_version(folder: Path, pkg: dict[str, object]) -> tuple[str, str, str]:
    """(major for the image, the declared range, where it was declared); ("22", "", "") when
    nothing is declared."""
    for dotfile in (".nvmrc", ".node-version"):
        text = read(folder / dotfile).split("#")[0].strip()
        if text:
            return _pinned(text, dotfile)
    for line in read(folder / ".tool-versions").splitlines():
        words = line.split("#")[0].split()
        if len(words) >= 2 and words[0] in ("nodejs", "node"):
            return _pinned(words[1], ".tool-versions")
    engines = pkg.get("engines")
    wanted = engines.get("node") if isinstance(engines, dict) else None
    if isinstance(wanted, str) and wanted.strip():
        try:
            ranges = semver.parse(wanted)
        except ValueError as exc:
            raise ConfigError(f"{folder / 'package.json'}: engines.node {wanted!r}: {exc}",
                              hint='an npm version range, e.g. ">=20" or "20.x"') from None
        major = semver.newest_major(ranges, prefer_up_to=int(DEFAULT))
        if major is None:
            raise ConfigError(f"{folder / 'package.json'}: engines.node {wanted!r} matches no "
                              "Node release", hint='e.g. ">=20" or "20.x"')
        return str(major), wanted.strip(), "engines.node"
    return DEFAULT, "", ""


def _pinned(text: str, source: str) -> tuple[str, str, str]:
    """A version file's line: `20`, `v20.11.1`, `lts/iron`, `lts/*`, `node`. The image and the
    process runtime's check use its major: node:MAJOR-slim has the newest patch of it."""
    low = text.lower().removeprefix("v")
    if low.startswith("lts/"):
        major = LTS.get(low[4:]) if low != "lts/*" else int(DEFAULT)
    elif low in ("node", "stable", "latest", "current"):
        major = int(DEFAULT)
    else:
        major = int(m.group(1)) if (m := re.match(r"(\d+)", low)) else None
    if major is None:
        raise ConfigError(f"{source}: {text!r} is not a Node version",
                          hint="e.g. 20, v20.11.1 or lts/iron")
    return str(major), f"{major}.x" if text != str(major) else text, f"{source} ({text})"


# Build steps and command --------------------------------------------------------------------
def _build_steps(folder: Path, pkg: dict[str, object], installer: str) -> list[str]:
    steps = []
    prisma = pkg.get("prisma")
    schema = prisma.get("schema") if isinstance(prisma, dict) else None
    if (folder / "prisma" / "schema.prisma").exists() or isinstance(schema, str):
        steps.append("node_modules/.bin/prisma generate" +
                     (f" --schema {shlex.quote(schema)}" if isinstance(schema, str) else ""))
    if _scripts(pkg).get("build"):
        steps.append(f"{_tool(installer)} run build")
    return steps


def _scripts(pkg: dict[str, object]) -> dict[str, str]:
    scripts = pkg.get("scripts")
    return {k: v for k, v in scripts.items() if isinstance(v, str)} \
        if isinstance(scripts, dict) else {}


def dev_server(script: str) -> str | None:
    """What makes `script` a development server (nodemon, --watch, next dev...), or None."""
    return next((why for pattern, why in DEV if re.search(pattern, script)), None)


def _command(folder: Path, pkg: dict[str, object], installer: str,
             builds: bool) -> tuple[str, str]:
    """The production web command and why; "" and what was looked at when there is none."""
    scripts = _scripts(pkg)
    refused = []
    for name in PRODUCTION_SCRIPTS:
        script = scripts.get(name, "").strip()
        if not script or name == "preview" and not _direct(script):
            continue
        if why := dev_server(script):
            refused.append(f"scripts.{name} runs a development server ({why})")
            continue
        if builds and (why := _compiles_at_start(script)):
            refused.append(f"scripts.{name} compiles at every start with {why}, a dev "
                           "dependency (the build's output runs instead)")
            continue
        if builds:  # the build already ran: `npm run build && node dist/main.js` -> node
            script = re.sub(r"^(npm|pnpm|yarn|bun)\s+(run\s+)?build\s*&&\s*", "", script)
        return _direct(script) or f"{_tool(installer)} run {name}", \
            f"scripts.{name} of package.json ({scripts[name].strip()!r})"
    deps = {**_dict(pkg.get("dependencies")), **_dict(pkg.get("devDependencies"))}
    main = pkg.get("main")
    main = main.strip() if isinstance(main, str) else ""
    if main and (builds or (folder / main).exists()):
        return f"node {main}", f"package.json main: {main}"
    if "next" in deps:
        return ("node node_modules/next/dist/bin/next start -H $HOST -p $PORT",
                "a Next.js app: next start")
    if builds and (entry := _built_entry(folder)):
        return f"node {entry}", f"the build's output {entry} (tsconfig.json outDir)"
    for plain in ("index.js", "server.js", "app.js", "main.js"):
        if (folder / plain).exists():
            return f"node {plain}", plain
    if main and not refused:  # generated, or put there by a step Headway does not see
        return f"node {main}", f"package.json main: {main} (not in the folder yet)"
    looked = "; ".join(refused) + "; " if refused else ""
    others = ", ".join(PRODUCTION_SCRIPTS[1:])
    return "", (f"{looked}no start script, no main, no index.js (nor {others}, Next.js, a "
                "built entry or server.js): set [processes.web] command in headway.toml, "
                "e.g. \"node dist/main.js\"")


def _compiles_at_start(script: str) -> str | None:
    """ts-node, tsx, babel-node: TypeScript compiled by a dev dependency at every start."""
    match = re.search(r"\b(ts-node|tsx|babel-node)\b", script)
    return match.group(1) if match else None


def _direct(script: str) -> str:
    """`node server.js` (after an optional NODE_ENV=production prefix), to run without npm in
    between (npm would sit between the signal and the app); "" when the script is more."""
    script = ENV_PREFIX.sub("", script.strip())
    if re.fullmatch(r"(node|bun)(\s+--?[\w-]+(=[\w.-]+)?)*\s+[\w./@-]+(\s+[\w$./=-]+)*",
                    script):
        return script
    return ""


def _built_entry(folder: Path) -> str | None:
    """dist/main.js for src/main.ts (NestJS), dist/index.js for src/index.ts..., from
    tsconfig.json's outDir and rootDir (tsc's defaults otherwise)."""
    text = re.sub(r"(?m)^\s*//.*$", "", read(folder / "tsconfig.json"))
    out = re.search(r'"outDir"\s*:\s*"([^"]+)"', text)
    root = re.search(r'"rootDir"\s*:\s*"([^"]+)"', text)
    out_dir = (out.group(1) if out else "dist").removeprefix("./").rstrip("/")
    root_dir = (root.group(1) if root else "src").removeprefix("./").rstrip("/")
    for stem in TS_ENTRIES:
        for source in (f"{root_dir}/{stem}.ts", f"src/{stem}.ts", f"{stem}.ts"):
            if (folder / source).exists():
                rel = Path(source).relative_to(root_dir) if source.startswith(f"{root_dir}/") \
                    else Path(source).name
                return f"{out_dir}/{Path(rel).with_suffix('.js')}"
    return None


def _dict(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


def _tool(installer: str) -> str:
    """The command scripts are run with: npm for every Node installer (it is in every Node
    image and install; pnpm's and yarn's node_modules/.bin work with it), bun for Bun."""
    return "bun" if installer == "bun" else "npm"


# Containerfile --------------------------------------------------------------------------------
def _install_lines(found: Detected, *, production: bool) -> tuple[str, str]:
    """(COPY of the manifests, RUN that installs) for the found installer."""
    pm = found.installer
    if pm == "npm":
        omit = " --omit=dev" if production else " --include=dev"
        return ("COPY package.json package-lock.json* npm-shrinkwrap.json* ./",
                ("RUN --mount=type=cache,target=/root/.npm if [ -f package-lock.json ] || "
                 f"[ -f npm-shrinkwrap.json ]; then npm ci{omit}; else npm install{omit}; fi"))
    if pm == "bun":
        return ("COPY package.json bun.lock* bun.lockb* ./",
                "RUN --mount=type=cache,target=/root/.bun/install/cache bun install "
                "--frozen-lockfile" + (" --production" if production else ""))
    # npm's copy of pnpm/yarn, not corepack: its shims download at first use and check
    # signatures that old corepack releases cannot verify, and Node 25 images drop it. In
    # its own prefix, which the final stage copies: a script the release command or an
    # instance runs may call it (`yarn drizzle-kit migrate`)
    tool = (f"npm install -g --prefix {TOOL_PREFIX} --no-audit --no-fund "
            f"{_package(pm, found.installer_version)}")
    if pm == "pnpm":
        return ("COPY package.json pnpm-lock.yaml ./",
                "RUN --mount=type=cache,target=/root/.local/share/pnpm/store " + tool +
                " && pnpm install --frozen-lockfile" + (" --prod" if production else ""))
    if _berry(found):
        return ("COPY package.json yarn.lock .yarnrc* ./",
                (f"RUN --mount=type=cache,target=/root/.yarn/berry/cache {tool} && {BERRY} "
                 "yarn install --immutable"))
    return ("COPY package.json yarn.lock ./",
            "RUN --mount=type=cache,target=/usr/local/share/.cache/yarn " + tool +
            " && yarn install --frozen-lockfile" + (" --production" if production else ""))


def _package(pm: str, version: str) -> str:
    """The npm package that brings `pm` at `version` (Yarn 2+ is @yarnpkg/cli-dist)."""
    if pm == "yarn" and not version.startswith("1"):
        return f"@yarnpkg/cli-dist@{version or '4'}"
    return f"{pm}@{version or 'latest'}"


def _berry(found: Detected) -> bool:
    return found.installer == "yarn" and not found.installer_version.startswith("1")


def _prune(found: Detected) -> str:
    """Drops dev dependencies from the build stage's node_modules (what the build generated
    in it, e.g. the Prisma client, stays)."""
    return {"npm": "npm prune --omit=dev --no-audit --no-fund",
            "pnpm": "pnpm prune --prod",
            "yarn": (f"{BERRY} yarn workspaces focus --all --production" if _berry(found) else
                     "yarn install --frozen-lockfile --production --prefer-offline"),
            "bun": "rm -rf node_modules && bun install --frozen-lockfile --production"
            }[found.installer]


def stages(found: Detected, image: str) -> str:
    user = "bun" if found.language == "bun" else "node"  # the official images' own user
    first = "deps" if not found.build and not found.dev_install else "build"
    tool = found.installer in {"pnpm", "yarn"}
    path = f"ENV PATH={TOOL_PREFIX}/bin:$PATH\n" if tool else ""
    final = f"""FROM {image}
ENV NODE_ENV=production HOST={HOST} PORT={PORT}
{path}WORKDIR /app
""" + (f"COPY --from={first} {TOOL_PREFIX} {TOOL_PREFIX}\n" if tool else "")
    tail = f"""USER {user}
EXPOSE {PORT}
CMD {exec_form(found.command)}
"""
    compiler = _compiler(found)
    if not found.build and not found.dev_install:
        copy, install = _install_lines(found, production=True)
        return f"""FROM {image} AS deps
{path}WORKDIR /app
{compiler}{copy}
{install}

{final}COPY --from=deps /app/node_modules ./node_modules
COPY . .
{tail}"""
    copy, install = _install_lines(found, production=False)
    steps = "\n".join(f"RUN NODE_ENV=production {step}" for step in found.build)
    # The whole built folder goes to the final stage: frameworks put their output in dist/,
    # .next/, build/ or node_modules/.prisma, so only pruned dev dependencies are left out.
    return f"""FROM {image} AS build
{path}WORKDIR /app
{compiler}{copy}
{install}
COPY . .
{steps}
RUN {_prune(found)}

{final}COPY --from=build /app ./
{tail}"""


def _compiler(found: Detected) -> str:
    """node-gyp's python3 (also as `python`, which older gyp files call), make and g++ in the
    install stage, never the final one, when a dependency compiles native code; the image's
    own Node headers (the official images have /usr/local/include/node) rather than a
    download from nodejs.org."""
    if not found.native or found.language != "node":
        return ""
    return (f"# {', '.join(found.native)}: compiled by node-gyp when no prebuilt binary fits\n"
            "RUN apt-get update && apt-get install -y --no-install-recommends python3 "
            "python-is-python3 make g++ && rm -rf /var/lib/apt/lists/*\n"
            "ENV npm_config_nodedir=/usr/local\n")


# Process runtime ------------------------------------------------------------------------------
def install(app: Path, found: Detected, cache: Path) -> None:
    """node_modules for the release folder `app` from its lock file. With build steps: dev
    dependencies too, then the build, then dev dependencies dropped, all in `app`. Without:
    production dependencies only, in a folder shared by every release with the same lock file,
    tool and Node (a code-only change installs nothing). `cache`: download caches, the pnpm /
    yarn / bun tools and the shared folders. Raises RuntimeFailure (the tool's last lines and
    a hint) on failure; nothing runs on a Node the app does not declare."""
    cache = cache / "node"  # beside the shared virtualenvs
    cache.mkdir(parents=True, exist_ok=True)
    env = _tool_env(cache)
    node_version = "" if found.language == "bun" else check_node(found, env)
    if _berry(found):  # the yarn installed here, not .yarnrc.yml's yarnPath (often absent)
        env["YARN_IGNORE_PATH"] = "1"
    if _berry(found) and "nodeLinker" not in read(app / ".yarnrc.yml"):
        env["YARN_NODE_LINKER"] = "node-modules"  # `node server.js` needs node_modules, not PnP
    tool = "npm" if found.installer == "npm" else ensure_tool(
        cache, env, found.installer, found.installer_version)
    env["PATH"] = f"{Path(tool).parent}:{env['PATH']}" if tool != "npm" else env["PATH"]
    if _shareable(app, found):
        _link_shared(app, found, tool, env, cache, _shared_key(app, found, node_version))
        return
    dev = bool(found.build) or found.dev_install
    _step(_install_argv(app, found, tool, cache, production=not dev), app, env,
          f"{found.installer} install", found)
    build_env = env | {"NODE_ENV": "production",
                       "PATH": f"{app / 'node_modules' / '.bin'}:{env['PATH']}"}
    for step in found.build:
        _step(shlex.split(step), app, build_env, step, found)
    if dev:
        if found.installer in ("bun", "yarn") and not _berry(found):
            shutil.rmtree(app / "node_modules", ignore_errors=True)  # reinstalled without dev
        _step(_prune_argv(app, found, tool, cache), app, env, "dropping dev dependencies",
              found)
    _link_tool(app, found, tool)


MANIFESTS = ("package.json", ".npmrc", ".yarnrc", ".yarnrc.yml", "bunfig.toml",
             *(f for files in LOCKS.values() for f in files))
LIFECYCLE = ("preinstall", "install", "postinstall", "prepare")


def _shareable(app: Path, found: Detected) -> bool:
    """No build, a lock file, and no install script of the app's own (which would need its
    sources): the production node_modules depend on the manifests alone."""
    if found.build or not _locked(app, found) or _berry(found):
        return False
    scripts = json.loads((app / "package.json").read_text()).get("scripts") or {}
    return not (isinstance(scripts, dict) and any(s in scripts for s in LIFECYCLE))


def _shared_key(app: Path, found: Detected, node_version: str) -> str:
    digest = hashlib.sha256(f"{found.installer}@{found.installer_version} node {node_version}"
                            .encode())
    for name in MANIFESTS:
        if (app / name).is_file():
            digest.update(name.encode() + b"\0" + (app / name).read_bytes())
    return digest.hexdigest()[:16]


def _link_shared(app: Path, found: Detected, tool: str, env: dict[str, str], cache: Path,
                 key: str) -> None:
    """`app/node_modules` -> the shared production node_modules for `key`, installed once
    (in a temporary folder renamed into place, so a crash leaves no half-made one)."""
    shared = cache / "modules" / key
    if not (shared / ".complete").exists():
        tmp = shared.with_name(f"{key}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name in MANIFESTS:
            if (app / name).is_file():
                shutil.copy2(app / name, tmp / name)
        _step(_install_argv(tmp, found, tool, cache, production=True), tmp, env,
              f"{found.installer} install", found)
        (tmp / "node_modules").mkdir(exist_ok=True)
        _link_tool(tmp, found, tool)
        (tmp / ".complete").touch()
        shutil.rmtree(shared, ignore_errors=True)
        os.replace(tmp, shared)
    elif not (shared / "node_modules" / ".bin" / found.installer).exists():
        _link_tool(shared, found, tool)  # made before the tool was linked there
    shutil.rmtree(app / "node_modules", ignore_errors=True)
    (app / "node_modules").symlink_to(shared / "node_modules")


def _link_tool(folder: Path, found: Detected, tool: str) -> None:
    """Instances and the release command find bun, yarn or pnpm on PATH through
    node_modules/.bin (a script such as `yarn drizzle-kit migrate` calls it); a copy the app
    depends on itself is kept."""
    if found.installer == "npm":
        return
    bins = folder / "node_modules" / ".bin"
    bins.mkdir(parents=True, exist_ok=True)
    link = bins / found.installer
    if found.installer != "bun" and link.exists() and not link.is_symlink():
        return
    if found.installer != "bun" and link.is_symlink() and "/tools/" not in str(link.readlink()):
        return
    link.unlink(missing_ok=True)
    link.symlink_to(tool)


def _locked(app: Path, found: Detected) -> bool:
    return any((app / f).exists() for f in LOCKS[found.installer])


def _install_argv(app: Path, found: Detected, tool: str, cache: Path, *,
                  production: bool) -> list[str]:
    pm, locked = found.installer, _locked(app, found)
    if pm == "npm":
        return ["npm", "ci" if locked else "install", "--omit=dev" if production else
                "--include=dev", "--cache", str(cache / "npm"), "--prefer-offline",
                "--no-audit", "--no-fund"]
    if pm == "pnpm":
        return [tool, "install", "--store-dir", str(cache / "pnpm-store"),
                *(["--frozen-lockfile"] if locked else []), *(["--prod"] if production else [])]
    if pm == "bun":
        return [tool, "install", *(["--frozen-lockfile"] if locked else []),
                *(["--production"] if production else [])]
    if _berry(found):
        return [tool, "install", *(["--immutable"] if locked else [])]
    return [tool, "install", "--cache-folder", str(cache / "yarn"), "--non-interactive",
            *(["--frozen-lockfile"] if locked else []), *(["--production"] if production else [])]


def _prune_argv(app: Path, found: Detected, tool: str, cache: Path) -> list[str]:
    if found.installer == "npm":
        return ["npm", "prune", "--omit=dev", "--no-audit", "--no-fund"]
    if found.installer == "pnpm":
        return [tool, "prune", "--prod"]
    if _berry(found):
        return [tool, "workspaces", "focus", "--all", "--production"]
    return _install_argv(app, found, tool, cache, production=True)


def _tool_env(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NODE_ENV"}  # dev deps are wanted
    return env | {"BUN_INSTALL_CACHE_DIR": str(cache / "bun"), "YARN_CACHE_FOLDER":
                  str(cache / "yarn"), "YARN_ENABLE_GLOBAL_CACHE": "false",
                  "npm_config_update_notifier": "false", "CI": "true",  # no prompts
                  "PATH": env.get("PATH", "/usr/local/bin:/usr/bin:/bin")}


def _step(argv: list[str], app: Path, env: dict[str, str], what: str, found: Detected) -> None:
    """Run one install or build step in `app`; on failure, a RuntimeFailure with the tool's
    own last lines (runner.run keeps only the last 15, which for npm is its usage text)."""
    try:
        proc = subprocess.run(argv, cwd=app, env=env, capture_output=True, text=True,
                              timeout=900, check=False)
    except FileNotFoundError:
        raise RuntimeFailure(f"{what}: {argv[0]} not found", hint=_hint(argv, found)) from None
    except subprocess.TimeoutExpired:
        raise RuntimeFailure(f"{what} took longer than 900s", hint=_hint(argv, found)) from None
    if proc.returncode != 0:
        tail = "\n".join(_without_usage(proc.stdout + proc.stderr)[-15:])
        raise RuntimeFailure(f"{what} failed (exit {proc.returncode}):\n{tail}",
                             hint=_hint(argv, found))


def _without_usage(output: str) -> list[str]:
    """The output's lines, without the usage text npm prints after its error."""
    lines = [line for line in output.strip().splitlines() if line.strip() != "npm error"]
    cut = next((n for n, line in enumerate(lines) if re.match(
        r"npm error (Clean install a project|Usage:|Install a package)", line)), len(lines))
    return lines[:cut]


def _hint(argv: list[str], found: Detected) -> str:
    if "prisma" in " ".join(argv):
        return ("prisma generate downloads its engines from binaries.prisma.sh: let this host "
                "reach it, or set PRISMA_ENGINES_MIRROR / the engine paths in [env]")
    if "build" in argv:
        return "the app's build script failed: run it in the app folder to see why"
    lock = LOCKS[found.installer][0]
    return (f"check that {lock} matches package.json (run `{found.installer} install` and "
            "commit the lock file) and that the npm registry is reachable")


def check_node(found: Detected, env: dict[str, str] | None = None) -> str:
    """This machine's node version, when it satisfies what the app declares; else a
    RuntimeFailure naming the version, where it was declared, and how to get it."""
    node = shutil.which("node", path=(env or os.environ).get("PATH"))
    if not node:
        raise RuntimeFailure("node: not found on PATH (the process runtime runs the app with "
                             "this machine's Node)", hint=_get_node(found))
    version = run([node, "--version"], what="node --version").strip().removeprefix("v")
    if found.version_range and not semver.satisfies(version,
                                                    semver.parse(found.version_range)):
        raise RuntimeFailure(
            f"Node {found.version_range} is required by {found.version_from}, but this "
            f"machine's node ({node}) is v{version}", hint=_get_node(found))
    return version


def _get_node(found: Detected) -> str:
    major = found.version or DEFAULT
    return (f"install Node {major} (nvm install {major}, or the nodejs package of "
            f"deb.nodesource.com / nodejs.org) first on PATH for headway and its agent; or "
            f'deploy in a container (runtime = "podman": image node:{major}-slim)')


def ensure_tool(cache: Path, env: dict[str, str], pm: str, version: str) -> str:
    """pnpm, yarn or bun from the npm registry (the bun package ships its binary), installed
    once per version under `cache`; the path of its executable."""
    package = _package(pm, version)
    home = cache / "tools" / re.sub(r"[^\w.@-]+", "_", package)
    exe = home / "node_modules" / ".bin" / pm
    if not exe.exists():  # installed beside, then renamed: a concurrent deploy sees all or none
        tmp = home.with_name(f"{home.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            run(["npm", "install", "--prefix", str(tmp), "--no-audit", "--no-fund",
                 "--no-save", "--cache", str(cache / "npm"), package], env=env,
                what=f"installing {package} (npm install)")
        except RuntimeFailure as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeFailure(exc.message, hint=f"{pm} comes from the npm "
                                 f"registry's {package.rsplit('@', 1)[0]} package: check that "
                                 "the registry is reachable") from exc
        if not exe.exists():
            shutil.rmtree(home, ignore_errors=True)
            os.replace(tmp, home)
        shutil.rmtree(tmp, ignore_errors=True)
    return str(exe)
