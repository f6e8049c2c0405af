"""Detection for `headway init` and `headway build`, table-driven over small app folders."""

from pathlib import Path

import pytest

from headway.builder.detect import detect
from headway.errors import ConfigError

MAIN = "if __name__ == '__main__':\n    serve()\n"


def folder(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.mark.parametrize(("files", "command"), [
    ({"main.py": "from fastapi import FastAPI\napi = FastAPI()\n"},
     "uvicorn main:api --host $HOST --port $PORT"),
    ({"app.py": "from flask import Flask\napp = Flask(__name__)\n"},
     "gunicorn --bind $HOST:$PORT app:app"),
    ({"manage.py": "", "shop/wsgi.py": "application = None\n"},
     "gunicorn --bind $HOST:$PORT shop.wsgi"),
    ({"server.py": "if __name__ == '__main__':\n    serve()\n"}, "python3 server.py"),
    ({"package.json": '{"scripts": {"start": "node server.js"}}'}, "node server.js"),
    ({"package.json": '{"scripts": {"start": "next start"}}', "pnpm-lock.yaml": ""},
     "pnpm run start"),
    ({"package.json": '{"main": "src/app.js"}', "yarn.lock": ""}, "node src/app.js"),
    ({"package.json": "{}", "index.js": ""}, "node index.js"),
    ({"package.json": '{"scripts": {"start": "bun src/index.ts"}}', "bun.lockb": ""},
     "bun src/index.ts"),
])
def test_detects_the_command(tmp_path: Path, files: dict[str, str], command: str) -> None:
    assert detect(folder(tmp_path, files)).command == command


@pytest.mark.parametrize(("files", "language", "version", "installer"), [
    ({"app.py": MAIN, "requirements.txt": "", ".python-version": "3.11.7\n"},
     "python", "3.11", "pip"),
    ({"app.py": MAIN, "pyproject.toml": 'requires-python = ">=3.10"', "uv.lock": ""},
     "python", "3.10", "uv"),
    ({"app.py": MAIN, "pyproject.toml": "", "poetry.lock": ""}, "python", "3.12", "poetry"),
    ({"app.py": MAIN, "Pipfile": ""}, "python", "3.12", "pipenv"),
    ({"package.json": '{"engines": {"node": ">=20.9"}}', "index.js": ""}, "node", "20", "npm"),
    ({"package.json": "{}", "index.js": "", ".nvmrc": "v18.19.0"}, "node", "18", "npm"),
    ({"package.json": "{}", "index.js": ""}, "node", "22", "npm"),
    ({"package.json": "{}", "index.js": "", "bun.lock": ""}, "bun", "1", "bun"),
])
def test_detects_runtime_version_and_installer(tmp_path: Path, files: dict[str, str],
                                               language: str, version: str,
                                               installer: str) -> None:
    found = detect(folder(tmp_path, files))
    assert (found.language, found.version, found.installer) == (language, version, installer)


def test_an_existing_containerfile_is_used_as_is(tmp_path: Path) -> None:
    found = detect(folder(tmp_path, {"Dockerfile": "FROM scratch\n", "app.py": MAIN,
                                     "requirements.txt": ""}))
    assert found.containerfile == "Dockerfile"
    assert "Dockerfile found: built as is" in found.reasons[-1]
    only = detect(folder(tmp_path / "x", {"Containerfile": "FROM scratch\n"}))
    assert (only.language, only.containerfile) == ("container", "Containerfile")


def test_unknown_layout_says_what_was_looked_for(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("hi")
    with pytest.raises(ConfigError) as err:
        detect(tmp_path)
    assert "looked for package.json, requirements.txt" in err.value.message
    assert "Containerfile, Dockerfile" in err.value.message
    assert "[processes.web] command" in (err.value.hint or "")
    (tmp_path / "package.json").write_text('{"name": "x"}')
    with pytest.raises(ConfigError) as err:
        detect(tmp_path)
    assert "no start script, no main, no index.js" in err.value.message
