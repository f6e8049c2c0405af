"""Real Node apps deploy unedited: the lock file decides the installer, the declared Node
version picks the image and is checked against this machine's node on the process runtime,
the build runs with dev dependencies that are dropped afterwards, and the web command is a
production one (never a dev server). Unit tests over small folders; integration tests install
real packages from the npm registry and deploy with `headway deploy` on both runtimes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from headway.builder import node, semver
from headway.builder.containerfile import base_image, render
from headway.builder.detect import detect
from headway.errors import ConfigError, RuntimeFailure

NODE_MAJOR = subprocess.run(["node", "--version"], capture_output=True, text=True,
                            check=True).stdout.strip().lstrip("v").split(".")[0]


def folder(tmp_path: Path, files: dict[str, str | dict]) -> Path:  # type: ignore[type-arg]
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text if isinstance(text, str) else json.dumps(text))
    return tmp_path


# Version ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("files", "version", "declared", "source"), [
    ({".nvmrc": "v18.19.0\n"}, "18", "18.x", ".nvmrc (v18.19.0)"),
    ({".nvmrc": "lts/iron\n"}, "20", "20.x", ".nvmrc (lts/iron)"),
    ({".node-version": "20\n"}, "20", "20", ".node-version (20)"),
    ({".tool-versions": "python 3.12.1\nnodejs 20.11.0\n"}, "20", "20.x",
     ".tool-versions (20.11.0)"),
    ({"package.json": {"engines": {"node": ">=18 <21"}}}, "20", ">=18 <21", "engines.node"),
    ({"package.json": {"engines": {"node": "^18 || ^20"}}}, "20", "^18 || ^20", "engines.node"),
    ({"package.json": {"engines": {"node": ">=20.9"}}}, "22", ">=20.9", "engines.node"),
    ({"package.json": {"engines": {"node": "18.x"}}}, "18", "18.x", "engines.node"),
    ({".nvmrc": "20", "package.json": {"engines": {"node": ">=18"}}}, "20", "20", ".nvmrc (20)"),
    ({}, node.DEFAULT, "", ""),
])
def test_declared_version_picks_the_newest_release_line_that_satisfies_it(
        tmp_path: Path, files: dict[str, str | dict], version: str, declared: str,  # type: ignore[type-arg]
        source: str) -> None:
    pkg = {"scripts": {"start": "node server.js"}, **files.get("package.json", {})}  # type: ignore[dict-item]
    files = {**files, "package.json": pkg}
    found = detect(folder(tmp_path, files))
    assert (found.version, found.version_range, found.version_from) == (version, declared, source)
    assert base_image(found) == f"docker.io/library/node:{version}-slim"


@pytest.mark.parametrize(("wanted", "yes", "no"), [
    (">=20", ["20.0.0", "24.1.0"], ["18.19.0"]),
    ("^20.9", ["20.9.0", "20.20.2"], ["20.8.9", "21.0.0"]),
    ("~20.1", ["20.1.7"], ["20.2.0"]),
    ("16 - 18", ["16.0.0", "18.99.0"], ["19.0.0"]),
    (">18.1.2 <=20", ["18.1.3", "20.5.0"], ["18.1.2", "21.0.0"]),
    ("*", ["4.0.0"], []),
])
def test_npm_ranges(wanted: str, yes: list[str], no: list[str]) -> None:
    ranges = semver.parse(wanted)
    assert all(semver.satisfies(v, ranges) for v in yes)
    assert not any(semver.satisfies(v, ranges) for v in no)


def test_a_bad_engines_range_names_the_file_and_key(tmp_path: Path) -> None:
    folder(tmp_path, {"package.json": {"engines": {"node": ">=twenty"}}, "index.js": ""})
    with pytest.raises(ConfigError) as err:
        detect(tmp_path)
    assert "package.json: engines.node '>=twenty'" in err.value.message


def test_process_runtime_refuses_a_node_the_app_does_not_declare(tmp_path: Path) -> None:
    other = "18" if NODE_MAJOR != "18" else "20"
    folder(tmp_path, {"package.json": {"scripts": {"start": "node server.js"}},
                      ".nvmrc": f"v{other}.1.0\n"})
    found = detect(tmp_path)
    with pytest.raises(RuntimeFailure) as err:
        node.install(tmp_path, found, tmp_path / "cache")
    assert f"Node {other}.x is required by .nvmrc (v{other}.1.0)" in err.value.message
    assert f"this machine's node ({shutil.which('node')}) is v{NODE_MAJOR}." in err.value.message
    assert f"nvm install {other}" in (err.value.hint or "")
    assert f"node:{other}-slim" in (err.value.hint or "")
    assert not (tmp_path / "node_modules").exists()  # nothing ran on the wrong Node
    fine = detect(folder(tmp_path / "ok", {"package.json": {
        "engines": {"node": f">={NODE_MAJOR}"}, "scripts": {"start": "node server.js"}}}))
    assert node.check_node(fine).startswith(f"{NODE_MAJOR}.")


# Start command -------------------------------------------------------------------------------
@pytest.mark.parametrize(("scripts", "extra", "command"), [
    ({"start": "node server.js"}, {}, "node server.js"),
    ({"start": "NODE_ENV=production node --enable-source-maps dist/main.js"}, {},
     "node --enable-source-maps dist/main.js"),
    ({"start": "next start"}, {}, "npm run start"),
    ({"dev": "next dev", "build": "next build"}, {"dependencies": {"next": "15.0.0"}},
     "node node_modules/next/dist/bin/next start"),
    ({"start": "nodemon src/index.js", "start:prod": "node src/index.js"}, {},
     "node src/index.js"),
    ({"start": "nest start", "start:dev": "nest start --watch", "start:prod": "node dist/main",
      "build": "nest build"}, {}, "node dist/main"),
    ({"dev": "node server", "build": "vite build", "preview":
      "cross-env NODE_ENV=production node server"}, {}, "node server"),
    ({"start": "ts-node-dev src/index.ts", "build": "tsc"}, {"tsconfig.json":
     '{"compilerOptions": {"outDir": "./build", "rootDir": "src"}}', "src/index.ts": ""},
     "node build/index.js"),
    ({"start": "vite", "serve": "serve -s dist"}, {}, "npm run serve"),
    ({"dev": "tsx watch src/main.ts", "build": "tsc"}, {"main": "dist/main.js"},
     "node dist/main.js"),
])
def test_the_production_start_command_never_a_dev_server(
        tmp_path: Path, scripts: dict[str, str], extra: dict[str, object], command: str) -> None:
    files = {k: v for k, v in extra.items() if "." in k}
    pkg = {"scripts": scripts, **{k: v for k, v in extra.items() if "." not in k}}
    found = detect(folder(tmp_path, {"package.json": pkg, **files}))  # type: ignore[dict-item]
    assert found.command == command


def test_only_a_dev_server_says_why_and_what_to_set(tmp_path: Path) -> None:
    folder(tmp_path, {"package.json": {"scripts": {"start": "nodemon src/index.js",
                                                   "dev": "vite"}}})
    with pytest.raises(ConfigError) as err:
        detect(tmp_path)
    assert "scripts.start runs a development server (nodemon)" in err.value.message
    assert "[processes.web] command" in err.value.message + (err.value.hint or "")


def test_build_steps_prisma_generate_then_the_build_script(tmp_path: Path) -> None:
    folder(tmp_path, {"package.json": {"scripts": {"build": "tsc", "start": "node dist/index.js"}},
                      "prisma/schema.prisma": "generator client {\n provider = \"prisma-client-js\"\n}\n"})
    found = detect(tmp_path)
    assert found.build == ["node_modules/.bin/prisma generate", "npm run build"]
    assert "build: node_modules/.bin/prisma generate" in found.reasons


# Containerfile -------------------------------------------------------------------------------
def test_a_build_runs_with_dev_dependencies_and_the_final_stage_gets_the_built_app(
        tmp_path: Path) -> None:
    folder(tmp_path, {"package.json": {"scripts": {"build": "tsc", "start": "node dist/index.js"},
                                       "engines": {"node": "20.x"}}, "package-lock.json": "{}"})
    text = render(detect(tmp_path))
    build, final = text.split("\n\nFROM ")
    assert build.startswith("# Generated") and "FROM docker.io/library/node:20-slim AS build" in build
    assert "npm ci --include=dev" in build
    assert build.index("COPY . .") < build.index("RUN NODE_ENV=production npm run build") < \
        build.index("RUN npm prune --omit=dev")
    assert "COPY --from=build /app ./" in final and "COPY . ." not in final
    assert "ENV NODE_ENV=production" in final and "USER node" in final
    assert final.endswith('CMD ["node", "dist/index.js"]\n')


def test_without_a_build_production_dependencies_are_their_own_layer(tmp_path: Path) -> None:
    folder(tmp_path, {"package.json": {"scripts": {"start": "node server.js"}},
                      "pnpm-lock.yaml": "", "package-lock.json": "{}"})
    text = render(detect(tmp_path))
    assert "pnpm install --frozen-lockfile --prod" in text
    assert "corepack enable pnpm" in text  # or pnpm from npm where the image has no corepack
    assert "COPY --from=deps /app/node_modules ./node_modules\nCOPY . ." in text
    assert "ENV NODE_ENV=production" in text


# Integration: real installs ------------------------------------------------------------------
@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("node-cache")
